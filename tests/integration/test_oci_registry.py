"""Importing from a real registry (Debian's docker-registry on 127.0.0.1), anonymous and
with htpasswd Basic auth; the second import downloads no blob."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

try:  # tests/ as a package (tests/__init__.py) or as plain directories
    from .fixtures_registry import (
        BuiltImage,
        Registry,
        built_image,
        registry,
        tls_registry,
        tree_listing,
    )
except ImportError:
    from fixtures_registry import (  # type: ignore[no-redef]
        BuiltImage,
        Registry,
        built_image,
        registry,
        tls_registry,
        tree_listing,
    )

from ignitevm.errors import IgniteError, NotFoundError
from ignitevm.oci import FetchOptions, resolve_image, unpack_image

pytestmark = pytest.mark.integration
__all__ = ["built_image", "registry", "tls_registry"]  # fixtures, imported for pytest


def test_registry_import_and_cache(
    registry: Registry, built_image: BuiltImage, tmp_path: Path
) -> None:
    ref = registry.push(f"oci:{built_image.layout}:test", "ignitevm/test:1")
    opts = FetchOptions(cache_dir=tmp_path / "cache", registry_config_dir=registry.config_dir)
    image = resolve_image(ref, opts)
    assert image.name == f"{registry.host}/ignitevm/test:1"
    assert len(image.layers) == 3
    unpack_image(image, tmp_path / "rootfs1", opts)
    assert tree_listing(tmp_path / "rootfs1") == built_image.merged
    cached = {p.name for p in (tmp_path / "cache/sha256").iterdir()}
    assert {layer.digest[7:] for layer in image.layers} <= cached
    assert image.config_digest[7:] in cached

    blob_gets = registry.requests("GET /v2/ignitevm/test/blobs/")
    assert blob_gets >= 4  # config + 3 layers
    again = resolve_image(ref, opts)
    assert again == image
    unpack_image(again, tmp_path / "rootfs2", opts)
    assert registry.requests("GET /v2/ignitevm/test/blobs/") == blob_gets  # nothing downloaded
    by_digest = resolve_image(f"{registry.host}/ignitevm/test@{image.digest}", opts)
    assert by_digest.config_digest == image.config_digest


def test_registry_errors(registry: Registry, built_image: BuiltImage, tmp_path: Path) -> None:
    ref = registry.push(f"oci:{built_image.layout}:test", "ignitevm/test:1")
    opts = FetchOptions(cache_dir=tmp_path / "cache", registry_config_dir=registry.config_dir)
    with pytest.raises(NotFoundError):
        resolve_image(f"{registry.host}/ignitevm/test:nope", opts)
    if not registry.auth:
        return
    nobody = tmp_path / "nobody"
    nobody.mkdir()
    with pytest.raises(IgniteError, match="requires authentication") as err:
        resolve_image(ref, FetchOptions(cache_dir=tmp_path / "c2", registry_config_dir=nobody))
    assert err.value.hint and "config.json" in err.value.hint
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "config.json").write_text(
        json.dumps({"auths": {registry.host: {"username": "ignite", "password": "bad"}}})
    )
    with pytest.raises(IgniteError, match="refused the credentials"):
        resolve_image(ref, FetchOptions(cache_dir=tmp_path / "c3", registry_config_dir=wrong))


@pytest.mark.parametrize("registry", ["anonymous"], indirect=True)  # auth is covered above
def test_registry_zstd_layers(registry: Registry, built_image: BuiltImage, tmp_path: Path) -> None:
    ref = registry.push(
        f"oci:{built_image.layout}:test",
        "ignitevm/zstd:1",
        "--format",
        "oci",
        "--dest-compress-format",
        "zstd",
    )
    opts = FetchOptions(cache_dir=tmp_path / "cache", registry_config_dir=registry.config_dir)
    image = resolve_image(ref, opts)
    assert {layer.media_type for layer in image.layers} == {
        "application/vnd.oci.image.layer.v1.tar+zstd"
    }
    unpack_image(image, tmp_path / "rootfs", opts)
    assert tree_listing(tmp_path / "rootfs") == built_image.merged


def test_https_registry_with_a_self_signed_certificate(
    tls_registry: Registry, built_image: BuiltImage, tmp_path: Path
) -> None:
    """Issue 14 item 7 through the CLI: docker-registry over TLS (self-signed) with htpasswd.
    Without the insecure setting: refused with a hint; with IGNITE_CONTAINERD_INSECURE_REGISTRIES
    but no credentials: an auth error; with the configuration's registryConfigDir: imported;
    --insecure-registry and --registry-config-dir do the same."""
    import os
    import subprocess
    import sys

    ref = tls_registry.push(f"oci:{built_image.layout}:test", "ignitevm/test:1")
    nobody = tmp_path / "nobody"
    nobody.mkdir()
    plain, with_dir = tmp_path / "plain.yaml", tmp_path / "with-dir.yaml"
    head = "apiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\nspec:\n"
    plain.write_text(head + "  networkPlugin: none\n")
    with_dir.write_text(head + f"  registryConfigDir: {tls_registry.config_dir}\n")

    def ignite(config: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "ignitevm.cli", "--ignite-config", str(config), *args]
        full = {**os.environ, "IGNITE_STATE_DIR": str(tmp_path / "state"),
                "DOCKER_CONFIG": str(nobody), **env}  # fmt: skip
        if not env:
            full.pop("IGNITE_CONTAINERD_INSECURE_REGISTRIES", None)
        return subprocess.run(argv, capture_output=True, text=True, env=full, timeout=300)

    refused = ignite(with_dir, "image", "import", ref)
    assert refused.returncode != 0 and "speaks HTTPS" in refused.stderr, refused.stderr
    insecure = {"IGNITE_CONTAINERD_INSECURE_REGISTRIES": f"example.org,{tls_registry.host}"}
    no_creds = ignite(plain, "image", "import", ref, **insecure)
    assert no_creds.returncode != 0 and "requires authentication" in no_creds.stderr
    assert "CERTIFICATE_VERIFY_FAILED" not in no_creds.stderr
    done = ignite(with_dir, "image", "import", ref, **insecure)
    assert done.returncode == 0, done.stderr
    assert "ignitevm/test:1" in ignite(plain, "image", "ls").stdout
    ignite(plain, "image", "rm", ref)
    flags = ignite(plain, "image", "import", ref, "--insecure-registry", tls_registry.host,
                   "--registry-config-dir", str(tls_registry.config_dir))  # fmt: skip
    assert flags.returncode == 0, flags.stderr
