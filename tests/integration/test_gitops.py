"""ignited against real git (a `git daemon` on 127.0.0.1, and file://) and real VMs under QEMU.
Issue 5's acceptance. At most one guest boots at a time: VMs that need not run are
`running: false`, and the hand-made VM is created, not run."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.conftest import Ignite

pytestmark = pytest.mark.integration

OWNER_LABEL = "ignite.weave.works/owner"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def vm_manifest(
    name: str,
    *,
    memory: str = "192MB",
    running: bool | None = None,
    host: str | None = None,
    image: str = "ignitevm/default:latest",
) -> str:
    meta = f"metadata:\n  name: {name}\n"
    if host:
        meta += f"  annotations:\n    ignite.weave.works/host: {host}\n"
    text = (
        f"apiVersion: ignite.weave.works/v1alpha4\nkind: VM\n{meta}"
        f"spec:\n  image:\n    oci: {image}\n  memory: {memory}\n  diskSize: 1GB\n"
    )
    if running is not None:
        text += f"status:\n  running: {str(running).lower()}\n"
    return text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Repo:
    """A bare repository (what ignited follows) and a work tree that commits and pushes to it."""

    bare: Path
    work: Path
    url: str

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(self.work), *args],
            check=True,
            text=True,
            capture_output=True,
            env={**os.environ, **GIT_ENV},
        ).stdout

    def commit(self, files: dict[str, str | None], message: str = "change") -> str:
        for name, text in files.items():
            path = self.work / name
            if text is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        self.git("push", "-q", "origin", "HEAD:main")
        return self.git("rev-parse", "HEAD").strip()


def _make_repo(base: Path) -> tuple[Path, Path]:
    bare, work = base / "vms.git", base / "work"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    subprocess.run(["git", "-C", str(work), "remote", "add", "origin", str(bare)], check=True)
    return bare, work


@pytest.fixture
def file_repo(tmp_path: Path) -> Repo:
    bare, work = _make_repo(tmp_path)
    repo = Repo(bare, work, f"file://{bare}")
    repo.commit({"README.md": "VMs\n"}, "init")
    return repo


@pytest.fixture
def git_daemon_repo(tmp_path: Path) -> Iterator[Repo]:
    """The repository served by a real `git daemon` on 127.0.0.1; killed in teardown."""
    bare, work = _make_repo(tmp_path)
    port = free_port()
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--export-all",
            f"--base-path={tmp_path}",
            f"--port={port}",
            "--listen=127.0.0.1",
            "--reuseaddr",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or daemon.poll() is not None:
                    raise AssertionError("git daemon did not start") from None
                time.sleep(0.1)
        repo = Repo(bare, work, f"git://127.0.0.1:{port}/vms.git")
        repo.commit({"README.md": "VMs\n"}, "init")
        yield repo
    finally:
        daemon.terminate()
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


@dataclass
class Ignited:
    ignite: Ignite
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def argv(self, *args: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "ignitevm.cli.ignited",
            *args,
            "--ignite-config",
            str(self.ignite.config),
            "--network-plugin",
            "none",
        ]

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "IGNITE_STATE_DIR": str(self.ignite.state_dir)}

    def once(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.argv(*args, "--once"), capture_output=True, text=True, env=self.env, timeout=400
        )
        if ok and proc.returncode != 0:
            raise AssertionError(
                f"ignited {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def start(self, *args: str, log: Path) -> subprocess.Popen[str]:
        with open(log, "w") as out:
            proc = subprocess.Popen(
                self.argv(*args), stdout=out, stderr=subprocess.STDOUT, text=True, env=self.env
            )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[str]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def ignited(ignite: Ignite) -> Iterator[Ignited]:
    runner = Ignited(ignite)
    try:
        yield runner
    finally:
        for proc in runner.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def prefix() -> str:
    return f"g{uuid.uuid4().hex[:6]}"


def vm_state(ignite: Ignite, name: str) -> dict[str, object] | None:
    """inspect's JSON of VM ``name`` (live "running"), or None when there is none."""
    views = json.loads(ignite("ps", "-a", "-o", "json").stdout)
    for vm in views:
        if vm["metadata"]["name"] == name:
            return dict(vm)
    return None


def running(ignite: Ignite, name: str) -> bool:
    vm = vm_state(ignite, name)
    return bool(vm and vm["status"]["running"])  # type: ignore[index]


def qemu_memory(uid: str) -> int:
    """The -m of the QEMU that runs VM ``uid`` (its initrd lives in vm/<uid>/)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            argv
            and argv[0].endswith(b"qemu-system-x86_64")
            and any(f"/vm/{uid}/".encode() in a for a in argv)
        ):
            return int(argv[argv.index(b"-m") + 1])
    raise AssertionError(f"no QEMU runs VM {uid}")


def test_git_daemon_lifecycle(
    ignite: Ignite, ignited: Ignited, git_daemon_repo: Repo, prefix: str
) -> None:
    """commit -> runs; memory change -> replaced; kill -> back; running: false -> stopped;
    file deleted -> removed; a hand-made VM survives every pass untouched (created, then
    started by hand while ignited's VM is stopped)."""
    repo, name, hand = git_daemon_repo, f"{prefix}-vm", f"{prefix}-hand"
    ignite("create", "--name", hand, "--memory", "192MB", "--size", "1GB")
    repo.commit({"vms/vm.yaml": vm_manifest(name)})
    out = ignited.once("gitops", repo.url)
    assert f"create {name}" in out.stderr
    vm = vm_state(ignite, name)
    assert vm is not None and vm["status"]["running"]  # type: ignore[index]
    assert vm["metadata"]["labels"][OWNER_LABEL] == "ignited"  # type: ignore[index]
    uid = str(vm["metadata"]["uid"])  # type: ignore[index]
    assert qemu_memory(uid) == 192
    # a pass with nothing to do does nothing
    assert "0 actions done" in ignited.once("gitops", repo.url).stderr

    repo.commit({"vms/vm.yaml": vm_manifest(name, memory="256MB")})
    out = ignited.once("gitops", repo.url)
    assert f"replace {name}" in out.stderr
    vm = vm_state(ignite, name)
    assert vm is not None and vm["spec"]["memory"] == "256MB"  # type: ignore[index]
    assert running(ignite, name) and qemu_memory(uid) == 256

    ignite("kill", name)
    assert not running(ignite, name)
    assert f"start {name}" in ignited.once("gitops", repo.url).stderr
    assert running(ignite, name)

    repo.commit({"vms/vm.yaml": vm_manifest(name, memory="256MB", running=False)})
    assert f"stop {name}" in ignited.once("gitops", repo.url).stderr
    assert vm_state(ignite, name) is not None and not running(ignite, name)

    # the hand-made VM, running now (ignited's is stopped: one guest at a time), survives too
    ignite("start", hand)
    started = vm_state(ignite, hand)
    assert started is not None
    repo.commit({"vms/vm.yaml": None})
    assert f"remove {name}" in ignited.once("gitops", repo.url).stderr
    assert vm_state(ignite, name) is None
    handmade = vm_state(ignite, hand)
    assert handmade is not None and handmade["status"]["running"]  # type: ignore[index]
    assert handmade["status"]["pid"] == started["status"]["pid"]  # type: ignore[index]
    assert OWNER_LABEL not in handmade["metadata"].get("labels", {})  # type: ignore[attr-defined]


def _metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples


def _wait(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def test_long_running_metrics_and_restart_reboots_nothing(
    ignite: Ignite, ignited: Ignited, file_repo: Repo, prefix: str, tmp_path: Path
) -> None:
    name, port = f"{prefix}-vm", free_port()
    commit = file_repo.commit({"vm.yaml": vm_manifest(name)})
    proc = ignited.start(
        "gitops",
        file_repo.url,
        "--interval",
        "1s",
        "--metrics-addr",
        f"127.0.0.1:{port}",
        log=tmp_path / "ignited.log",
    )
    try:
        _wait(lambda: running(ignite, name), 180, f"{name} to run")
        _wait(lambda: _metrics(port).get("ignited_reconcile_passes_total", 0) >= 1, 30, "a pass")
        first = _metrics(port)
        assert first['ignited_reconcile_actions_total{action="create"}'] == 1
        assert first[f'ignited_last_applied_commit_info{{commit="{commit}"}}'] == 1
        assert first['ignited_vms{state="running"}'] == 1
        _wait(
            lambda: (
                _metrics(port)["ignited_reconcile_passes_total"]
                > first["ignited_reconcile_passes_total"]
            ),
            30,
            "the pass counter to move",
        )
        # a new commit is applied without a restart
        broken = file_repo.commit({"bad.yaml": "kind: VM\n  x: [\n"})
        _wait(
            lambda: (
                _metrics(port).get(f'ignited_last_applied_commit_info{{commit="{broken}"}}') == 1
            ),
            30,
            "the new commit",
        )
        assert _metrics(port)['ignited_reconcile_errors_total{kind="manifest"}'] == 1
        assert _metrics(port)["ignited_manifest_errors"] == 1
    finally:
        ignited.stop(proc)
    assert proc.returncode == 0, (tmp_path / "ignited.log").read_text()
    before = vm_state(ignite, name)
    assert before is not None
    out = ignited.once("gitops", file_repo.url, ok=False)  # bad.yaml: exit 1
    assert out.returncode == 1 and re.search(r"bad\.yaml:\d+: invalid YAML", out.stderr)
    assert "1 in sync, 0 actions done" in out.stderr
    after = vm_state(ignite, name)
    assert after is not None and after["status"]["running"]  # type: ignore[index]
    for key in ("pid", "startTime"):
        assert after["status"][key] == before["status"][key]  # type: ignore[index]


def test_broken_manifests_beside_good_ones(
    ignite: Ignite, ignited: Ignited, tmp_path: Path, prefix: str
) -> None:
    root = tmp_path / "manifests"
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / "nested" / "deeper" / "good.yaml").write_text(vm_manifest(f"{prefix}-good"))
    (root / "stopped.json").write_text(
        json.dumps(
            {
                "apiVersion": "ignite.weave.works/v1alpha4",
                "kind": "VM",
                "metadata": {"name": f"{prefix}-stopped"},
                "spec": {"image": {"oci": "ignitevm/default:latest"}, "memory": "192MB"},
                "status": {"running": False},
            }
        )
    )
    (root / "syntax.yaml").write_text(
        "apiVersion: ignite.weave.works/v1alpha4\nkind: VM\nmetadata:\n  name: x\n spec: [\n"
    )
    (root / "field.yaml").write_text(
        vm_manifest(f"{prefix}-field").replace("  memory:", "  memroy:")
    )
    (root / "pull.yaml").write_text(
        vm_manifest(f"{prefix}-pull", image="127.0.0.1:9/nope/missing:1")
    )
    out = ignited.once("daemon", "--manifest-dir", str(root), ok=False)
    assert out.returncode == 1
    assert re.search(r"syntax\.yaml:\d+: invalid YAML", out.stderr), out.stderr
    assert "field.yaml" in out.stderr and "memroy" in out.stderr
    assert f"create {prefix}-pull" in out.stderr and "failed" in out.stderr
    assert running(ignite, f"{prefix}-good")
    stopped = vm_state(ignite, f"{prefix}-stopped")
    assert stopped is not None and not stopped["status"]["running"]  # type: ignore[index]
    assert vm_state(ignite, f"{prefix}-pull") is None


def test_two_hosts_share_one_repository(
    ignite: Ignite, ignited: Ignited, git_daemon_repo: Repo, prefix: str
) -> None:
    repo = git_daemon_repo
    repo.commit(
        {
            "a.yaml": vm_manifest(f"{prefix}-a", host="host-a", running=False),
            "b.yaml": vm_manifest(f"{prefix}-b", host="host-b", running=False),
            "any.yaml": vm_manifest(f"{prefix}-any", running=False),
        }
    )
    ignited.once("gitops", repo.url, "--host", "host-a")
    assert vm_state(ignite, f"{prefix}-a") is not None
    assert vm_state(ignite, f"{prefix}-b") is None and vm_state(ignite, f"{prefix}-any") is None
    ignited.once("gitops", repo.url, "--host", "host-b")
    b = vm_state(ignite, f"{prefix}-b")
    assert b is not None and b["metadata"]["labels"][OWNER_LABEL] == "ignited/host-b"  # type: ignore[index]
    assert vm_state(ignite, f"{prefix}-any") is None
    # each prunes only its own
    repo.commit({"a.yaml": None})
    assert "0 actions done" in ignited.once("gitops", repo.url, "--host", "host-b").stderr
    assert vm_state(ignite, f"{prefix}-a") is not None
    ignited.once("gitops", repo.url, "--host", "host-a")
    assert vm_state(ignite, f"{prefix}-a") is None and vm_state(ignite, f"{prefix}-b") is not None


IGNITE_EXAMPLE = """apiVersion: ignite.weave.works/v1alpha4
kind: VM
metadata:
  name: {name}
  uid: {uid}
spec:
  image:
    oci: ignitevm/default:latest
  cpus: 2
  diskSize: 3GB
  memory: 800MB
  ssh: true
status:
  running: true
"""


def test_ignite_documented_example_manifest(
    ignite: Ignite, ignited: Ignited, tmp_path: Path
) -> None:
    uid = uuid.uuid4().hex[:16]
    name = f"my-vm-{uid[:4]}"
    root = tmp_path / "manifests"
    root.mkdir()
    (root / "my-vm.yaml").write_text(IGNITE_EXAMPLE.format(name=name, uid=uid))
    ignited.once("daemon", "--manifest-dir", str(root), "--runtime", "containerd")
    vm = vm_state(ignite, name)
    assert vm is not None and vm["metadata"]["uid"] == uid  # type: ignore[index]
    assert vm["status"]["running"]  # type: ignore[index]
    spec = vm["spec"]
    assert (spec["cpus"], spec["memory"], spec["diskSize"], spec["ssh"]) == (  # type: ignore[index]
        2,
        "800MB",
        "3GB",
        True,
    )
    assert (ignite.state_dir / "vm" / uid / "id_ed25519.pub").exists()
    assert qemu_memory(uid) == 800
    shutil.rmtree(root)
