"""Reference parsing with Docker's defaults, and registry auth configuration."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from ignitevm.errors import ValidationError
from ignitevm.oci.auth import find_credentials, load_auths
from ignitevm.oci.image import parse_source
from ignitevm.oci.reference import Reference, parse_reference
from ignitevm.oci.registry import is_insecure, parse_challenge
from ignitevm.oci.types import SourceKind

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alpine", Reference("docker.io", "library/alpine", "latest")),
        ("alpine:3.19", Reference("docker.io", "library/alpine", "3.19")),
        ("weaveworks/ignite-ubuntu", Reference("docker.io", "weaveworks/ignite-ubuntu")),
        ("docker.io/alpine", Reference("docker.io", "library/alpine")),
        ("index.docker.io/library/alpine", Reference("docker.io", "library/alpine")),
        ("ghcr.io/org/img:v1", Reference("ghcr.io", "org/img", "v1")),
        ("localhost/img", Reference("localhost", "img")),
        ("localhost:5000/a/b/c:t", Reference("localhost:5000", "a/b/c", "t")),
        (
            "127.0.0.1:5000/ignitevm/default:latest",
            Reference("127.0.0.1:5000", "ignitevm/default", "latest"),
        ),
        (f"alpine@{DIGEST}", Reference("docker.io", "library/alpine", None, DIGEST)),
        (f"quay.io/x/y:1@{DIGEST}", Reference("quay.io", "x/y", "1", DIGEST)),
        ("my-registry.local:443/a__b.c-d", Reference("my-registry.local:443", "a__b.c-d")),
    ],
)
def test_parse_reference_defaults(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected


def test_reference_text_and_api_host() -> None:
    ref = parse_reference("alpine")
    assert str(ref) == "docker.io/library/alpine:latest"
    assert ref.api_host == "registry-1.docker.io"
    assert ref.target == "latest"
    pinned = parse_reference(f"127.0.0.1:5000/x@{DIGEST}")
    assert pinned.target == DIGEST and str(pinned) == f"127.0.0.1:5000/x@{DIGEST}"
    assert parse_reference(str(pinned)) == pinned


@pytest.mark.parametrize(
    "text",
    [
        "",
        " alpine",
        "Alpine",
        "alpine:",
        "alpine:bad tag",
        "alpine@sha256:123",
        "a//b",
        "alpine@md5",
        "-lead",
        f"x@sha256:{'AB' * 32}",
    ],
)
def test_parse_reference_rejects_bad_input_naming_it(text: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_reference(text)
    assert repr(text) in str(err.value)


@pytest.mark.parametrize(
    ("text", "kind", "rest"),
    [
        ("oci-archive:/tmp/a.tar", SourceKind.OCI_ARCHIVE, "/tmp/a.tar"),
        ("oci:/tmp/layout:v1", SourceKind.OCI_DIR, "/tmp/layout:v1"),
        ("docker-archive:x.tar", SourceKind.DOCKER_ARCHIVE, "x.tar"),
        ("tar:/r.tar.gz", SourceKind.TAR, "/r.tar.gz"),
        ("dir:/rootfs", SourceKind.DIR, "/rootfs"),
        ("docker://alpine", SourceKind.REGISTRY, "alpine"),
        ("localhost:5000/x", SourceKind.REGISTRY, "localhost:5000/x"),
        ("alpine:3", SourceKind.REGISTRY, "alpine:3"),
    ],
)
def test_parse_source(text: str, kind: SourceKind, rest: str) -> None:
    assert parse_source(text) == (kind, rest)


def test_insecure_hosts() -> None:
    assert is_insecure("localhost:5000", ())
    assert is_insecure("127.0.0.1:5000", ())
    assert is_insecure("127.0.0.1", ())
    assert not is_insecure("registry.example:5000", ())
    assert is_insecure("registry.example:5000", ("registry.example:5000",))
    assert is_insecure("registry.example:5000", ("registry.example",))


def test_parse_challenge() -> None:
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/alpine:pull"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/alpine:pull",
    }
    assert parse_challenge('Basic realm="Registry Realm"') == ("basic", {"realm": "Registry Realm"})


def _write_config(tmp_path: Path, doc: object) -> Path:
    (tmp_path / "config.json").write_text(json.dumps(doc))
    return tmp_path


def test_config_json_auth_forms(tmp_path: Path) -> None:
    b64 = base64.b64encode(b"alice:s3cr:et").decode()
    cfg = _write_config(
        tmp_path,
        {
            "auths": {
                "127.0.0.1:5000": {"auth": b64},
                "https://index.docker.io/v1/": {"username": "bob", "password": "pw"},
                "https://ghcr.io": {"auth": base64.b64encode(b"carol:x").decode()},
                "token.only": {"identitytoken": "abc"},
            },
            "credsStore": "desktop",
        },
    )
    creds = find_credentials("127.0.0.1:5000", cfg)
    assert creds is not None and (creds.username, creds.password) == ("alice", "s3cr:et")
    assert "s3cr" not in repr(creds)
    hub = find_credentials("docker.io", cfg)
    assert hub is not None and hub.username == "bob"
    ghcr = find_credentials("ghcr.io", cfg)
    assert ghcr is not None and ghcr.username == "carol"
    assert find_credentials("token.only", cfg) is None
    assert find_credentials("other:5000", cfg) is None
    assert set(load_auths(cfg)) == {"127.0.0.1:5000", "docker.io", "ghcr.io"}


def test_missing_config_means_anonymous(tmp_path: Path) -> None:
    assert find_credentials("127.0.0.1:5000", tmp_path) is None


@pytest.mark.parametrize(
    "doc",
    [
        {"auths": {"h": {"auth": "!!notbase64"}}},
        {"auths": {"h": {"auth": "bm9jb2xvbg=="}}},
        {"auths": []},
        ["not", "an", "object"],
    ],
)
def test_bad_config_json_is_a_validation_error(tmp_path: Path, doc: object) -> None:
    with pytest.raises(ValidationError) as err:
        load_auths(_write_config(tmp_path, doc))
    assert "config.json" in str(err.value)
