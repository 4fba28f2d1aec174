"""Registries over HTTPS with a self-signed certificate (issue 14 item 7): refused with a hint
unless named insecure (IGNITE_CONTAINERD_INSECURE_REGISTRIES, --insecure-registry), then
reached without certificate verification; auth errors are still auth errors; a named insecure
registry without TLS falls back to plain HTTP; the configuration's registryConfigDir is read."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from ignitevm.api import Configuration
from ignitevm.errors import IgniteError
from ignitevm.oci import FetchOptions, resolve_image, unpack_image
from ignitevm.oci.registry import is_named_insecure, schemes_for
from ignitevm.ops.services import Services
from ignitevm.store import Store
from tests.unit.test_oci_registry_client import PASSWORD, USER, FakeRegistry, _handler
from tests.unit.test_oci_registry_client import fake as plain_fake
from tests.unit.test_oci_support import layer_bytes, reg, write_oci_layout

HOST = "127.0.0.2"  # not a loopback *name*: treated like any remote registry

__all__ = ["plain_fake"]


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"), "-days", "1",
         "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=IP:{HOST}"],
        check=True, capture_output=True,
    )  # fmt: skip
    return d / "cert.pem", d / "key.pem"


def _serve(state: FakeRegistry, tls: tuple[Path, Path] | None) -> Iterator[FakeRegistry]:
    server = ThreadingHTTPServer((HOST, 0), _handler(state))
    state.port = server.server_address[1]
    scheme = "http"
    if tls is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    state.realm_base = f"{scheme}://{HOST}:{state.port}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def tls_fake(plain_fake: FakeRegistry, cert: tuple[Path, Path]) -> Iterator[FakeRegistry]:
    """The same fake registry (its layout and manifests), served over TLS on 127.0.0.2."""
    state = FakeRegistry(plain_fake.layout, plain_fake.manifests)
    yield from _serve(state, cert)


@pytest.fixture
def http_fake(tmp_path: Path) -> Iterator[FakeRegistry]:
    """Plain HTTP on 127.0.0.2, an image of two layers (fetched at the same time)."""
    layout = tmp_path / "layout2"
    layers = [layer_bytes([reg("etc/hostname", b"fake\n")], "gzip"),
              layer_bytes([reg("etc/motd", b"two\n")], "gzip")]  # fmt: skip
    digest = write_oci_layout(layout, layers, "gzip")
    manifest = (layout / "blobs/sha256" / digest[7:]).read_bytes()
    yield from _serve(FakeRegistry(layout, {"1": manifest}), None)


def _opts(tmp_path: Path, *insecure: str, config_dir: Path | None = None) -> FetchOptions:
    return FetchOptions(cache_dir=tmp_path / "cache", insecure_registries=insecure,
                        registry_config_dir=config_dir or tmp_path)  # fmt: skip


def test_scheme_choice() -> None:
    assert schemes_for("r.example:5000", ()) == (("https",), True)
    assert schemes_for("localhost:5000", ()) == (("http",), True)
    named = ("https://r.example:5000/", " other ")
    assert schemes_for("r.example:5000", named) == (("https", "http"), False)
    assert schemes_for("127.0.0.1:5000", ("127.0.0.1:5000",)) == (("https", "http"), False)
    assert is_named_insecure("other:443", named) and not is_named_insecure("r.example", named)


def test_self_signed_needs_the_insecure_setting(tls_fake: FakeRegistry, tmp_path: Path) -> None:
    ref = f"{HOST}:{tls_fake.port}/ns/img:1"
    with pytest.raises(IgniteError, match="CERTIFICATE_VERIFY_FAILED") as err:
        resolve_image(ref, _opts(tmp_path))
    assert "IGNITE_CONTAINERD_INSECURE_REGISTRIES" in (err.value.hint or "")
    image = resolve_image(ref, _opts(tmp_path, f"{HOST}:{tls_fake.port}"))
    assert image.layers and any(p.startswith("/token") for p in tls_fake.requests)


def test_auth_errors_stay_auth_errors_over_unverified_tls(
    tls_fake: FakeRegistry, tmp_path: Path
) -> None:
    tls_fake.require_user = True
    ref = f"{HOST}:{tls_fake.port}/ns/img:1"
    with pytest.raises(IgniteError, match="refused access"):
        resolve_image(ref, _opts(tmp_path, HOST))
    conf = tmp_path / "docker"
    conf.mkdir()
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (conf / "config.json").write_text(
        json.dumps({"auths": {f"{HOST}:{tls_fake.port}": {"auth": auth}}})
    )
    assert resolve_image(ref, _opts(tmp_path, HOST, config_dir=conf)).layers


def test_a_named_insecure_registry_without_tls_falls_back_to_http(
    http_fake: FakeRegistry, tmp_path: Path
) -> None:
    ref = f"{HOST}:{http_fake.port}/ns/img:1"
    with pytest.raises(IgniteError):
        resolve_image(ref, _opts(tmp_path))  # verified HTTPS only: no
    image = resolve_image(ref, _opts(tmp_path, HOST))
    # the layers come through a client of their own, fetched by several threads at once
    unpack_image(image, tmp_path / "rootfs", _opts(tmp_path, HOST))
    assert (tmp_path / "rootfs/etc/hostname").read_text() == "fake\n"
    assert (tmp_path / "rootfs/etc/motd").read_text() == "two\n"


def test_configuration_and_environment_reach_the_fetch_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IGNITE_CONTAINERD_INSECURE_REGISTRIES", "a.example:5000, b.example")
    config = Configuration.model_validate({"spec": {"registryConfigDir": str(tmp_path / "d")}})
    assert config.spec.registry_config_dir == str(tmp_path / "d")
    fetch = Services(config=config, store=Store(tmp_path / "state")).fetch
    assert fetch.registry_config_dir == tmp_path / "d"
    assert fetch.insecure_registries == ("a.example:5000", "b.example")


def test_ignites_later_name_client_config_dir_is_read_too(tmp_path: Path) -> None:
    config = Configuration.model_validate({"spec": {"clientConfigDir": str(tmp_path / "c")}})
    fetch = Services(config=config, store=Store(tmp_path / "state")).fetch
    assert fetch.registry_config_dir == tmp_path / "c"
