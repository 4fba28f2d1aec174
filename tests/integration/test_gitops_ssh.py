"""gitops over ssh: a private sshd on 127.0.0.1 (its own host key, one authorized key), ignited
with --identity-file and --hosts-file. Needs root (sshd) and Debian's openssh-server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import Ignite

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("sshd", path="/usr/sbin:/usr/bin") is None,
                       reason="sshd is missing: apt-get install openssh-server"),
]  # fmt: skip

SSHD = "/usr/sbin/sshd"
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}  # fmt: skip


@dataclass
class SshRepo:
    url: str
    key: Path
    known_hosts: Path
    head: str


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def ssh_repo(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[SshRepo]:
    if os.geteuid() != 0:
        pytest.skip("sshd needs root")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    host_key, client_key = tmp_path / "host_key", tmp_path / "client_key"
    _keygen(host_key)
    _keygen(client_key)
    (tmp_path / "authorized_keys").write_text((tmp_path / "client_key.pub").read_text())
    port = _free_port()
    config = tmp_path / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        f"AuthorizedKeysFile {tmp_path}/authorized_keys\nPidFile {tmp_path}/sshd.pid\n"
        "StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nUsePAM no\n"
    )
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {(tmp_path / 'host_key.pub').read_text()}")
    work, bare = tmp_path / "work", tmp_path / "vms.git"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    (work / "vms").mkdir()
    (work / "vms" / "vm.yaml").write_text(request.param if hasattr(request, "param") else "")
    subprocess.run(["git", "-C", str(work), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(work), "commit", "-qm", "c"], check=True, env=GIT_ENV)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    head = subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    sshd = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or sshd.poll() is not None:
                    raise AssertionError("sshd did not start") from None
                time.sleep(0.1)
        yield SshRepo(f"ssh://root@127.0.0.1:{port}{bare}", client_key, known, head)
    finally:
        sshd.terminate()
        try:
            sshd.wait(10)
        except subprocess.TimeoutExpired:
            sshd.kill()
            sshd.wait()


def _ignited(ignite: Ignite, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "ignitevm.cli.ignited", "gitops", *args, "--once",
            "--ignite-config", str(ignite.config), "--network-plugin", "none"]  # fmt: skip
    env = {**os.environ, "IGNITE_STATE_DIR": str(ignite.state_dir)}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)


def _manifest(name: str) -> str:
    return (
        f"apiVersion: ignite.weave.works/v1alpha4\nkind: VM\nmetadata:\n  name: {name}\n"
        "spec:\n  image:\n    oci: ignitevm/default:latest\n  memory: 192MB\n"
        "status:\n  running: false\n"
    )


@pytest.mark.parametrize("ssh_repo", [_manifest("gssh-vm")], indirect=True)
def test_identity_and_hosts_file(ignite: Ignite, ssh_repo: SshRepo) -> None:
    out = _ignited(ignite, ssh_repo.url, "--path", "vms", "--identity-file", str(ssh_repo.key),
                   "--hosts-file", str(ssh_repo.known_hosts))  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"checked out {ssh_repo.head[:12]}" in out.stderr
    assert "create gssh-vm" in out.stderr
    assert "gssh-vm" in ignite("ps", "-a").stdout


@pytest.mark.parametrize("ssh_repo", [_manifest("gssh-never")], indirect=True)
def test_unknown_host_key_is_refused(ignite: Ignite, ssh_repo: SshRepo, tmp_path: Path) -> None:
    _keygen(tmp_path / "impostor")  # a host key that is not the server's
    host = ssh_repo.known_hosts.read_text().split(" ")[0]
    other = tmp_path / "other_known_hosts"
    other.write_text(f"{host} {(tmp_path / 'impostor.pub').read_text()}")
    out = _ignited(ignite, ssh_repo.url, "--identity-file", str(ssh_repo.key),
                   "--hosts-file", str(other))  # fmt: skip
    assert out.returncode != 0
    assert "git fetch of ssh://" in out.stderr, out.stderr
    assert "Host key verification failed" in out.stderr, out.stderr
    assert "gssh-never" not in ignite("ps", "-a").stdout
