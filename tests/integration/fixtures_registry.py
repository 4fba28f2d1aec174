"""Fixtures for the OCI integration tests: a real registry (Debian's docker-registry on
127.0.0.1) and a multi-layer image built by buildah. Import the fixtures into a test module."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from ignitevm import proc

REGISTRY_USER = "ignite"
REGISTRY_PASSWORD = "s3cret-pw"


def require_root_and_tools(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    missing = [t for t in tools if proc.find_tool(t) is None]
    if missing:
        pytest.skip(
            f"needs {', '.join(missing)} (apt-get install docker-registry "
            "apache2-utils skopeo umoci buildah)"
        )


def free_port(ip: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((ip, 0))
        return int(sock.getsockname()[1])


@dataclass
class Registry:
    host: str  # 127.0.0.1:<port>
    log: Path
    auth: bool
    config_dir: Path  # a Docker config dir whose config.json holds the credentials (if auth)
    cert: Path | None = None  # the self-signed certificate of a TLS registry

    def requests(self, needle: str) -> int:
        """How many access-log lines contain ``needle`` (e.g. 'GET /v2/x/blobs/')."""
        return sum(needle in line for line in self.log.read_text(errors="replace").splitlines())

    def push(self, source: str, repo: str, *options: str) -> str:
        argv = ["skopeo", "copy", "-q", "--dest-tls-verify=false", *options]
        if self.auth:
            argv += ["--dest-creds", f"{REGISTRY_USER}:{REGISTRY_PASSWORD}"]
        proc.run([*argv, source, f"docker://{self.host}/{repo}"], timeout=120)
        return f"{self.host}/{repo}"


def _wait_ready(host: str, child: proc.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(tuple(host.split(":")), timeout=0.5):  # type: ignore[arg-type]
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("docker-registry did not start listening")


@contextmanager
def run_registry(
    base: Path, *, auth: bool, tls: bool = False, ip: str = "127.0.0.1"
) -> Iterator[Registry]:
    """docker-registry on <ip (loopback)>:<free port>, storage under ``base``; with htpasswd
    Basic auth (credentials in a config.json of a Docker config dir) and/or TLS with a
    self-signed certificate made by openssl (``Registry.cert``)."""
    host = f"{ip}:{free_port(ip)}"
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(base / "storage")},
            "delete": {"enabled": True},
        },
        "http": {"addr": host},
    }
    cert: Path | None = None
    if tls:
        cert, key = base / "cert.pem", base / "key.pem"
        proc.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                  str(cert), "-days", "1", "-subj", f"/CN={ip}", "-addext",
                  f"subjectAltName=IP:{ip}"])  # fmt: skip
        config["http"] = {"addr": host, "tls": {"certificate": str(cert), "key": str(key)}}
    docker_dir = base / "docker"
    docker_dir.mkdir()
    if auth:
        line = proc.output(["htpasswd", "-Bbn", REGISTRY_USER, REGISTRY_PASSWORD])
        (base / "htpasswd").write_text(line.strip() + "\n")
        config["auth"] = {"htpasswd": {"realm": "ignite-test", "path": str(base / "htpasswd")}}
        token = base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
        (docker_dir / "config.json").write_text(json.dumps({"auths": {host: {"auth": token}}}))
    # JSON is YAML: no YAML writer needed.
    (base / "config.yml").write_text(json.dumps(config))
    log = base / "registry.log"
    with open(log, "wb") as out:
        child = proc.start(
            ["docker-registry", "serve", str(base / "config.yml")], stdout=out, stderr=proc.STDOUT
        )
    try:
        _wait_ready(host, child, log)
        yield Registry(host=host, log=log, auth=auth, config_dir=docker_dir, cert=cert)
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except proc.TimeoutExpired:
            child.kill()
            child.wait()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["anonymous", "htpasswd"])
def registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    """docker-registry on 127.0.0.1:<free port>, storage in tmp; once anonymous and once
    with htpasswd Basic auth (credentials in a config.json of a tmp Docker config dir)."""
    require_root_and_tools("docker-registry", "htpasswd", "skopeo")
    with run_registry(tmp_path_factory.mktemp("registry"), auth=request.param == "htpasswd") as r:
        yield r


@pytest.fixture
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """docker-registry serving HTTPS with a self-signed certificate, htpasswd auth."""
    require_root_and_tools("docker-registry", "htpasswd", "skopeo", "openssl")
    with run_registry(tmp_path_factory.mktemp("tls-registry"), auth=True, tls=True) as r:
        yield r


# -- a multi-layer image built by buildah ---------------------------------------------------


@dataclass
class BuiltImage:
    layout: Path  # OCI layout directory holding tag "test"
    archive: Path  # the same image as oci-archive
    docker_archive: Path  # and as docker-archive
    merged: dict[str, tuple[object, ...]]  # the final filesystem as buildah mounts it


def _populate_lower(root: Path) -> None:
    for d in ("etc", "bin", "usr/bin", "opq/sub", "del/deep", "dev", "private"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "etc/hostname").write_text("buildah\n")
    (root / "etc/shadow").write_text("root:*:19000::::::\n")
    os.chown(root / "etc/shadow", 0, 42)
    os.chmod(root / "etc/shadow", 0o640)
    (root / "bin/tool").write_bytes(b"#!/bin/sh\necho tool\n")
    os.chmod(root / "bin/tool", 0o4755)
    os.symlink("tool", root / "bin/sh")
    os.symlink("/bin/tool", root / "usr/bin/abs")
    os.symlink("/etc/../../../../etc/passwd", root / "usr/bin/escaping-but-harmless")
    (root / "etc/x").write_text("x\n")
    os.link(root / "etc/x", root / "etc/x2")
    (root / "opq/a").write_text("a\n")
    (root / "opq/sub/s").write_text("s\n")
    os.symlink("../etc/x", root / "opq/link")
    (root / "del/f1").write_text("1\n")
    (root / "del/deep/f2").write_text("2\n")
    (root / "gone").write_text("gone\n")
    os.mkfifo(root / "dev/fifo")
    os.mknod(root / "dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    (root / "home").mkdir()
    (root / "home/user.txt").write_text("user\n")
    os.chown(root / "home/user.txt", 1000, 1000)
    os.chmod(root / "private", 0o700)
    (root / "big.bin").write_bytes(hashlib.sha256(b"seed").digest() * 40000)  # 1.2 MiB
    os.utime(root / "etc/hostname", (1_500_000_000, 1_500_000_000))


def _populate_upper(root: Path) -> None:
    (root / "gone").unlink()
    shutil.rmtree(root / "del")
    shutil.rmtree(root / "opq")
    (root / "opq").mkdir()  # deleted and recreated: overlayfs marks it opaque
    (root / "opq/new").write_text("new\n")
    (root / "etc/hostname").write_text("changed\n")
    (root / "bin/sh").unlink()
    (root / "bin/sh").write_text("now a file\n")
    os.link(root / "etc/x", root / "etc/x3")
    os.chmod(root / "bin/tool", 0o755)


def tree_listing(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything a user of the rootfs can see: type, mode, owner, content or target,
    device numbers, and which paths are hard links of each other."""
    out: dict[str, tuple[object, ...]] = {}
    inodes: dict[tuple[int, int], list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            st = path.lstat()
            common = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            if stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                out[rel] = ("file", *common, st.st_size, digest, int(st.st_mtime))
                inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", *common)
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", st.st_uid, st.st_gid, os.readlink(path))
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                out[rel] = ("device", *common, os.major(st.st_rdev), os.minor(st.st_rdev))
            else:
                out[rel] = ("other", stat.S_IFMT(st.st_mode), *common)
    for group in inodes.values():
        for rel in group:
            out[rel] = (*out[rel], tuple(sorted(group)))
    return out


@pytest.fixture(scope="module")
def built_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltImage]:
    """Two buildah layers (files, modes, owners, hard links, symlinks, a fifo, a device) and a
    second layer with deletions and an opaque directory, plus a small third layer."""
    require_root_and_tools("buildah", "skopeo")
    base = tmp_path_factory.mktemp("buildah")
    argv = [
        "buildah",
        "--root",
        str(base / "root"),
        "--runroot",
        str(base / "run"),
        "--storage-driver",
        "overlay",
    ]

    def bah(*args: str) -> str:
        return proc.output([*argv, *args], timeout=120).strip()

    try:
        ctr = bah("from", "scratch")
        _populate_lower(Path(bah("mount", ctr)))
        bah("commit", "-q", ctr, "layer1")
        ctr2 = bah("from", "layer1")
        _populate_upper(Path(bah("mount", ctr2)))
        bah("commit", "-q", ctr2, "layer2")
        ctr3 = bah("from", "layer2")
        merged_root = Path(bah("mount", ctr3))
        (merged_root / "etc/motd").write_text("third layer\n")
        bah("commit", "-q", ctr3, "final")
        merged = tree_listing(merged_root)
        layout = base / "layout"
        bah("push", "-q", "final", f"oci:{layout}:test")
        archive = base / "image.oci.tar"
        bah("push", "-q", "final", f"oci-archive:{archive}:test")
        docker_archive = base / "image.docker.tar"
        bah("push", "-q", "final", f"docker-archive:{docker_archive}:ignitevm/test:1")
        yield BuiltImage(layout, archive, docker_archive, merged)
    finally:
        proc.run([*argv, "rm", "-a"], check=False, timeout=60)
        proc.run([*argv, "rmi", "-a", "-f"], check=False, timeout=60)
        shutil.rmtree(base, ignore_errors=True)
