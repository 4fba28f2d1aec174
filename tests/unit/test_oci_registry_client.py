"""The registry client against a small distribution-API server on 127.0.0.1: the Bearer
token flow (as Docker Hub does it), manifest lists, digest checks, the cache."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

try:  # tests/ as a package (tests/__init__.py) or as plain directories
    from .test_oci_support import (
        layer_bytes,
        reg,
        sha,
        tree,
        write_oci_layout,
    )
except ImportError:
    from test_oci_support import (  # type: ignore[no-redef]
        layer_bytes,
        reg,
        sha,
        tree,
        write_oci_layout,
    )

from ignitevm.errors import IgniteError, NotFoundError
from ignitevm.oci import FetchOptions, resolve_image, unpack_image
from ignitevm.oci.blobs import DigestMismatchError

TOKEN = "tok-123"
USER, PASSWORD = "alice", "pw"


class FakeRegistry:
    def __init__(self, layout: Path, manifests: dict[str, bytes]) -> None:
        self.layout = layout
        self.manifests = manifests  # tag or digest -> body
        self.requests: list[str] = []
        self.corrupt: set[str] = set()
        self.require_user = False
        self.port = 0
        self.realm_base = ""  # default: http://127.0.0.1:<port>


def _handler(state: FakeRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(
            self, code: int, body: bytes = b"", headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(code)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            state.requests.append(self.path)
            if self.path.startswith("/token"):
                return self._token()
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                realm = f"{state.realm_base or f'http://127.0.0.1:{state.port}'}/token"
                return self._send(
                    401,
                    b"{}",
                    {
                        "WWW-Authenticate": f'Bearer realm="{realm}",service="fake",'
                        f'scope="repository:ns/img:pull"'
                    },
                )
            _, _, repo_and_rest = self.path.partition("/v2/")
            repo, kind, ref = repo_and_rest.rsplit("/", 2)
            if repo != "ns/img":
                return self._send(404)
            if kind == "manifests" and ref in state.manifests:
                body = state.manifests[ref]
                media = json.loads(body).get("mediaType", "")
                return self._send(200, body, {"Content-Type": media})
            blob = state.layout / "blobs/sha256" / ref.removeprefix("sha256:")
            if kind == "blobs" and blob.is_file():
                data = blob.read_bytes()
                return self._send(200, data + b"x" if ref in state.corrupt else data)
            return self._send(404, b'{"errors": [{"code": "MANIFEST_UNKNOWN"}]}')

        def _token(self) -> None:
            auth = self.headers.get("Authorization", "")
            good = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if state.require_user and auth != good:
                return self._send(401)
            return self._send(200, json.dumps({"token": TOKEN}).encode())

    return Handler


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeRegistry]:
    layout = tmp_path / "layout"
    digest = write_oci_layout(
        layout, [layer_bytes([reg("etc/hostname", b"fake\n")], "gzip")], "gzip"
    )
    manifest = (layout / "blobs/sha256" / digest[7:]).read_bytes()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": "sha256:" + "0" * 64,
                    "size": 1,
                    "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
                },
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest,
                    "size": len(manifest),
                    "platform": {"os": "linux", "architecture": "amd64"},
                },
            ],
        }
    ).encode()
    state = FakeRegistry(layout, {"1": manifest, digest: manifest, "multi": index})
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _opts(tmp_path: Path, config_dir: Path | None = None) -> FetchOptions:
    return FetchOptions(cache_dir=tmp_path / "cache", registry_config_dir=config_dir or tmp_path)


def test_bearer_token_flow_index_and_cache(fake: FakeRegistry, tmp_path: Path) -> None:
    ref = f"127.0.0.1:{fake.port}/ns/img:multi"
    image = resolve_image(ref, _opts(tmp_path))
    assert image.name == ref
    assert any(
        p.startswith("/token?") and "scope=repository%3Ans%2Fimg%3Apull" in p for p in fake.requests
    )
    unpack_image(image, tmp_path / "rootfs", _opts(tmp_path))
    assert tree(tmp_path / "rootfs")["etc/hostname"] == ("file", "0o644", "fake\n")
    blob_requests = [p for p in fake.requests if "/blobs/" in p]
    assert len(set(blob_requests)) == 2  # config + layer (a 401 before the token repeats one)
    fake.requests.clear()
    unpack_image(resolve_image(ref, _opts(tmp_path)), tmp_path / "rootfs2", _opts(tmp_path))
    assert [p for p in fake.requests if "/blobs/" in p] == []
    fake.requests.clear()
    resolve_image(f"127.0.0.1:{fake.port}/ns/img@{image.digest}", _opts(tmp_path))
    assert [p for p in fake.requests if "/v2/" in p] == []  # pinned manifest: all from cache


def test_platform_not_in_index(fake: FakeRegistry, tmp_path: Path) -> None:
    opts = FetchOptions(
        cache_dir=tmp_path / "cache", platform="linux/s390x", registry_config_dir=tmp_path
    )
    with pytest.raises(NotFoundError, match="available: linux/amd64, linux/arm64/v8"):
        resolve_image(f"127.0.0.1:{fake.port}/ns/img:multi", opts)


def test_token_with_credentials(fake: FakeRegistry, tmp_path: Path) -> None:
    fake.require_user = True
    ref = f"127.0.0.1:{fake.port}/ns/img:1"
    with pytest.raises(IgniteError, match="refused access"):
        resolve_image(ref, _opts(tmp_path))
    conf = tmp_path / "docker"
    conf.mkdir()
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (conf / "config.json").write_text(
        json.dumps({"auths": {f"127.0.0.1:{fake.port}": {"auth": auth}}})
    )
    assert resolve_image(ref, _opts(tmp_path, conf)).layers


def test_corrupt_blob_is_refused_and_not_cached(fake: FakeRegistry, tmp_path: Path) -> None:
    image = resolve_image(f"127.0.0.1:{fake.port}/ns/img:1", _opts(tmp_path))
    layer = image.layers[0].digest
    fake.corrupt.add(layer)
    with pytest.raises(DigestMismatchError, match=layer):
        unpack_image(image, tmp_path / "rootfs", _opts(tmp_path))
    assert not (tmp_path / "cache/sha256" / layer[7:]).exists()
    assert sha(b"") not in str(list((tmp_path / "cache/sha256").iterdir()))


def test_unknown_tag_and_repository(fake: FakeRegistry, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        resolve_image(f"127.0.0.1:{fake.port}/ns/img:nope", _opts(tmp_path))
    with pytest.raises(NotFoundError):
        resolve_image(f"127.0.0.1:{fake.port}/other/img:1", _opts(tmp_path))


def test_unreachable_registry_has_a_hint(tmp_path: Path) -> None:
    with pytest.raises(IgniteError) as err:
        resolve_image("127.0.0.1:1/ns/img:1", _opts(tmp_path))
    assert err.value.hint and "registry" in err.value.hint
