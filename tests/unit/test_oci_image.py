"""Resolving and unpacking images from local sources; digests; the blob cache."""

from __future__ import annotations

import gzip
import json
import os
import tarfile
from pathlib import Path

import pytest

try:  # tests/ as a package (tests/__init__.py) or as plain directories
    from .test_oci_support import (
        dir_,
        hard,
        layer_bytes,
        reg,
        sha,
        sym,
        tree,
        whiteout,
        write_oci_layout,
    )
except ImportError:
    from test_oci_support import (  # type: ignore[no-redef]
        dir_,
        hard,
        layer_bytes,
        reg,
        sha,
        sym,
        tree,
        whiteout,
        write_oci_layout,
    )

from ignitevm.errors import IgniteError, NotFoundError, ValidationError
from ignitevm.oci import FetchOptions, resolve_image, unpack_image
from ignitevm.oci.blobs import BlobCache, DigestMismatchError
from ignitevm.oci.manifest import select_platform

LOWER = [
    dir_("etc"),
    reg("etc/os-release", b"ID=test\n"),
    reg("bin/busybox", b"\x7fELF"),
    sym("bin/sh", "busybox"),
    reg("tmp/junk", b"x"),
]
UPPER = [whiteout("tmp/junk"), hard("bin/ash", "bin/busybox"), reg("etc/motd", b"hi\n")]
EXPECTED = {
    "bin": ("dir", "0o755"),
    "bin/ash": ("file", "0o644", "\x7fELF"),
    "bin/busybox": ("file", "0o644", "\x7fELF"),
    "bin/sh": ("symlink", "busybox"),
    "etc": ("dir", "0o755"),
    "etc/motd": ("file", "0o644", "hi\n"),
    "etc/os-release": ("file", "0o644", "ID=test\n"),
    "tmp": ("dir", "0o755"),
}


@pytest.fixture
def opts(tmp_path: Path) -> FetchOptions:
    return FetchOptions(cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("compress", ["none", "gzip", "zstd", "xz"])
def test_oci_dir_roundtrip(tmp_path: Path, opts: FetchOptions, compress: str) -> None:
    layers = [layer_bytes(LOWER, compress), layer_bytes(UPPER, compress)]
    digest = write_oci_layout(tmp_path / "layout", layers, compress, ref="v1")
    image = resolve_image(f"oci:{tmp_path / 'layout'}:v1", opts)
    assert image.digest == digest
    assert image.name == f"oci:{tmp_path / 'layout'}:v1"
    assert [layer.digest for layer in image.layers] == [sha(data) for data in layers]
    assert image.size == sum(len(d) for d in layers)
    assert image.config["config"]["Cmd"] == ["/bin/sh"]
    assert image.uid == image.config_digest[7:23]
    unpack_image(image, tmp_path / "rootfs", opts)
    assert tree(tmp_path / "rootfs") == EXPECTED


def test_oci_archive(tmp_path: Path, opts: FetchOptions) -> None:
    write_oci_layout(tmp_path / "layout", [layer_bytes(LOWER, "gzip"), layer_bytes(UPPER)], "gzip")
    archive = tmp_path / "image.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tmp_path / "layout", arcname=".")
    image = resolve_image(f"oci-archive:{archive}", opts)
    assert image.name == f"oci-archive:{archive}"
    unpack_image(image, tmp_path / "rootfs", opts)
    assert tree(tmp_path / "rootfs") == EXPECTED
    with pytest.raises(NotFoundError, match="no image named 'nope'"):
        resolve_image(f"oci-archive:{archive}:nope", opts)


def test_tampered_layer_is_refused(tmp_path: Path, opts: FetchOptions) -> None:
    good = layer_bytes([reg("f", b"good")])
    write_oci_layout(tmp_path / "layout", [good])
    image = resolve_image(f"oci:{tmp_path / 'layout'}", opts)
    blob = tmp_path / "layout/blobs/sha256" / image.layers[0].digest[7:]
    blob.write_bytes(layer_bytes([reg("f", b"evil")]))
    with pytest.raises(DigestMismatchError) as err:
        unpack_image(image, tmp_path / "rootfs", opts)
    assert image.layers[0].digest in str(err.value)


def test_tampered_config_is_refused(tmp_path: Path, opts: FetchOptions) -> None:
    write_oci_layout(tmp_path / "layout", [layer_bytes([reg("f")])])
    index = json.loads((tmp_path / "layout/index.json").read_text())
    manifest_blob = tmp_path / "layout/blobs/sha256" / index["manifests"][0]["digest"][7:]
    config_digest = json.loads(manifest_blob.read_text())["config"]["digest"]
    (tmp_path / "layout/blobs/sha256" / config_digest[7:]).write_text('{"os": "evil"}')
    with pytest.raises(DigestMismatchError):
        resolve_image(f"oci:{tmp_path / 'layout'}", opts)


def test_unpack_needs_an_empty_directory(tmp_path: Path, opts: FetchOptions) -> None:
    write_oci_layout(tmp_path / "layout", [layer_bytes([reg("f")])])
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "rootfs/old").touch()
    with pytest.raises(ValidationError, match="not empty"):
        unpack_image(resolve_image(f"oci:{tmp_path / 'layout'}", opts), tmp_path / "rootfs", opts)


def test_blob_cache_keeps_only_verified_blobs(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache")
    data = b"blob"
    with pytest.raises(DigestMismatchError), cache.writer(sha(b"other"), "test") as out:
        out.write(data)
    assert cache.find(sha(b"other")) is None
    assert list((tmp_path / "cache/sha256").iterdir()) == []  # no temp file left
    cache.put_bytes(sha(data), data, "test")
    assert cache.read_bytes(sha(data)) == data
    cache.path(sha(data)).write_bytes(b"corrupted")
    assert cache.read_bytes(sha(data)) is None  # dropped, will be fetched again
    assert cache.find(sha(data)) is None


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_tar_rootfs_source(tmp_path: Path, opts: FetchOptions, suffix: str) -> None:
    raw = layer_bytes(LOWER)
    path = tmp_path / f"rootfs.tar{suffix}"
    path.write_bytes(gzip.compress(raw) if suffix else raw)
    image = resolve_image(f"tar:{path}", opts)
    assert image.name == f"tar:{path}"
    assert image.digest == sha(path.read_bytes())
    again = resolve_image(f"tar:{path}", opts)
    assert again.config_digest == image.config_digest  # same content, same uid
    unpack_image(image, tmp_path / "rootfs", opts)
    assert tree(tmp_path / "rootfs")["bin/sh"] == ("symlink", "busybox")


def test_dir_rootfs_source(tmp_path: Path, opts: FetchOptions) -> None:
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc/hostname").write_text("vm\n")
    (src / "etc/hostname").chmod(0o600)
    os.symlink("/etc/hostname", src / "link")
    os.link(src / "etc/hostname", src / "hard")
    image = resolve_image(f"dir:{src}", opts)
    unpack_image(image, tmp_path / "rootfs", opts)
    out = tmp_path / "rootfs"
    assert tree(out) == tree(src)
    assert (out / "hard").stat().st_ino == (out / "etc/hostname").stat().st_ino
    (src / "etc/new").write_text("x")
    assert resolve_image(f"dir:{src}", opts).config_digest != image.config_digest


def _docker_archive(tmp_path: Path, layers: list[bytes]) -> Path:
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha(d) for d in layers]},
        }
    )
    archive = tmp_path / "docker.tar"
    src = tmp_path / "docker"
    src.mkdir()
    names = []
    for i, data in enumerate(layers):
        (src / f"l{i}").mkdir()
        (src / f"l{i}/layer.tar").write_bytes(data)
        names.append(f"l{i}/layer.tar")
    (src / "cfg.json").write_text(config)
    (src / "manifest.json").write_text(
        json.dumps([{"Config": "cfg.json", "RepoTags": ["test/img:1"], "Layers": names}])
    )
    with tarfile.open(archive, "w") as tar:
        tar.add(src, arcname=".")
    return archive


def test_docker_archive(tmp_path: Path, opts: FetchOptions) -> None:
    archive = _docker_archive(tmp_path, [layer_bytes(LOWER), layer_bytes(UPPER)])
    image = resolve_image(f"docker-archive:{archive}", opts)
    assert resolve_image(f"docker-archive:{archive}:test/img:1", opts).digest == image.digest
    unpack_image(image, tmp_path / "rootfs", opts)
    assert tree(tmp_path / "rootfs") == EXPECTED


def test_docker_archive_diff_id_mismatch(tmp_path: Path, opts: FetchOptions) -> None:
    archive = _docker_archive(tmp_path, [layer_bytes(LOWER)])
    image = resolve_image(f"docker-archive:{archive}", opts)
    (tmp_path / "evil").mkdir()
    os.replace(_docker_archive(tmp_path / "evil", [layer_bytes([reg("f", b"evil")])]), archive)
    with pytest.raises(DigestMismatchError):
        unpack_image(image, tmp_path / "rootfs", opts)


def test_platform_selection_lists_available() -> None:
    index = {
        "manifests": [
            {
                "digest": "sha256:" + "1" * 64,
                "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
            },
            {"digest": "sha256:" + "2" * 64, "platform": {"os": "linux", "architecture": "amd64"}},
            {
                "digest": "sha256:" + "3" * 64,
                "platform": {"os": "unknown", "architecture": "unknown"},
            },
        ]
    }
    assert select_platform(index, "linux/amd64", "img")["digest"].endswith("2" * 64)
    assert select_platform(index, "linux/arm64", "img")["digest"].endswith("1" * 64)
    with pytest.raises(NotFoundError) as err:
        select_platform(index, "linux/s390x", "img")
    assert "linux/amd64, linux/arm64/v8" in str(err.value)
    with pytest.raises(ValidationError):
        select_platform(index, "amd64", "img")


@pytest.mark.parametrize("cut", [0.5, 0.999])
def test_truncated_gzip_layer_is_an_ignite_error(
    tmp_path: Path, opts: FetchOptions, cut: float
) -> None:
    data = layer_bytes([reg("f", os.urandom(200_000))], "gzip")
    write_oci_layout(tmp_path / "layout", [data], "gzip")
    image = resolve_image(f"oci:{tmp_path / 'layout'}", opts)
    blob = tmp_path / "layout/blobs/sha256" / image.layers[0].digest[7:]
    blob.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(IgniteError) as err:
        unpack_image(image, tmp_path / "rootfs", opts)
    assert image.layers[0].digest in str(err.value)


def test_docker_archive_with_oci_layout_inside(tmp_path: Path, opts: FetchOptions) -> None:
    """Docker 25+ `docker save`: an OCI layout plus a manifest.json pointing into blobs/."""
    layers = [layer_bytes(LOWER), layer_bytes(UPPER)]
    layout = tmp_path / "saved"
    digest = write_oci_layout(layout, layers)
    manifest = json.loads((layout / "blobs/sha256" / digest[7:]).read_text())
    (layout / "manifest.json").write_text(
        json.dumps(
            [
                {
                    "Config": f"blobs/sha256/{manifest['config']['digest'][7:]}",
                    "RepoTags": ["ignitevm/default:latest"],
                    "Layers": [f"blobs/sha256/{sha(d)[7:]}" for d in layers],
                }
            ]
        )
    )
    archive = tmp_path / "saved.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(layout, arcname=".")
    image = resolve_image(f"docker-archive:{archive}:ignitevm/default:latest", opts)
    assert image.config_digest == manifest["config"]["digest"]
    unpack_image(image, tmp_path / "rootfs", opts)
    assert tree(tmp_path / "rootfs") == EXPECTED
    assert resolve_image(f"oci-archive:{archive}", opts).config_digest == image.config_digest
