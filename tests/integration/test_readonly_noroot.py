"""`ignite` commands that only read metadata work for an unprivileged user (Ignite #137 #406
#672): ps, inspect, image ls, kernel ls, version, --help, completion, against a state directory
as ignite leaves it (VM and image directories 0711, guest data 0600: docs/architecture.md
"State directory"), with a VM running (the user cannot open its directory to probe the lock,
and asks /proc instead) and after its supervisor was killed (stale runtime.json: nothing to undo
for a reader, no error either). What is guest data stays root's: the console (`logs` is refused
with one error and a hint), the disk, the boot files with copy-files and keys."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, Ignite

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="no setpriv (util-linux)"),
]

NOBODY = 65534
# /root (where the venv's interpreter lives) is private: run the system Python with the
# venv's packages, which is what a user with a system-wide install has.
SYSTEM_PYTHON = Path("/usr/bin/python3")
SITE = ROOT / ".venv" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture
def shared_state(ignite: Ignite) -> Iterator[Ignite]:
    """A state dir others can reach (its parent 0755), with the session's kernel and image
    hard-linked in (modes kept); removed with every VM in it afterwards."""
    check = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version_info[:2] >= (3, 11))"],
        capture_output=True, text=True,
    )  # fmt: skip
    if check.stdout.strip() != "True":
        pytest.skip(f"{SYSTEM_PYTHON} is not Python >= 3.11")
    base = Path(tempfile.mkdtemp(prefix="ignite-ro-", dir="/tmp"))
    base.chmod(0o755)  # only the way in: the modes inside are ignite's own
    state = base / "state"
    state.mkdir()
    for kind in ("image", "kernel"):
        subprocess.run(["cp", "-al", str(ignite.state_dir / kind), str(state / kind)], check=True)
    ro = Ignite(state_dir=state, config=base / "config.yaml")
    shutil.copy(ignite.config, ro.config)
    try:
        yield ro
    finally:
        ro.remove_all()
        shutil.rmtree(base, ignore_errors=True)


def _as_nobody(ignite: Ignite, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": "/tmp",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{SITE / 'site-packages'}",
        "IGNITE_STATE_DIR": str(ignite.state_dir),
    }
    argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
            str(SYSTEM_PYTHON), "-m", "ignitevm.cli", "--ignite-config", str(ignite.config),
            *args]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert (proc.returncode == 0) == ok, f"ignite {' '.join(args)} as nobody: {proc.stderr}"
    return proc


def _nobody_reads(path: Path) -> bool:
    argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
            "cat", str(path)]  # fmt: skip
    return subprocess.run(argv, capture_output=True, timeout=10).returncode == 0


def test_read_only_commands_as_nobody(shared_state: Ignite, vm_name: str, tmp_path: Path) -> None:
    ro = shared_state
    secret = tmp_path / "secret"
    secret.write_text("root's secret\n")
    secret.chmod(0o600)
    ro("run", "--name", vm_name, "--memory", "256MB", "--network-plugin", "none", "--ssh",
       "--copy-files", f"{secret}:/etc/secret")  # fmt: skip
    assert vm_name in _as_nobody(ro, "ps").stdout
    assert "Up " in _as_nobody(ro, "ps").stdout
    data = json.loads(_as_nobody(ro, "inspect", "vm", vm_name).stdout)
    assert data["status"]["running"] is True
    refused = _as_nobody(ro, "logs", vm_name, ok=False).stderr.splitlines()
    assert refused == [f"error: the console of VM {vm_name} is readable by root only",
                       f"hint: run it as root: sudo ignite logs {vm_name}"]  # fmt: skip
    vm_dir = ro.state_dir / "vm" / data["metadata"]["uid"]
    for name in ("disk.qcow2", "initrd", "vm-layer.cpio", "console.log", "id_ed25519"):
        assert (vm_dir / name).exists() and not _nobody_reads(vm_dir / name), name
    assert _nobody_reads(vm_dir / "metadata.json") and _nobody_reads(vm_dir / "runtime.json")
    image = next((ro.state_dir / "image").glob("*/image.ext4"))
    assert not _nobody_reads(image)
    assert "ignitevm/default" in _as_nobody(ro, "image", "ls").stdout
    assert len(_as_nobody(ro, "kernel", "ls").stdout.splitlines()) == 2  # header + the kernel
    assert "qemu" in _as_nobody(ro, "version").stdout
    assert "Usage" in _as_nobody(ro, "--help").stdout
    assert _as_nobody(ro, "completion", "bash").stdout.strip()
    # the supervisor dies (kill -9): a reader sees the truth and changes nothing
    runtime = json.loads((vm_dir / "runtime.json").read_text())
    os.kill(runtime["supervisor_pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while "Up " in _as_nobody(ro, "ps", "-a").stdout and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "Stopped" in _as_nobody(ro, "ps", "-a").stdout
    assert (vm_dir / "runtime.json").exists()  # left for root's cleanup
    ro("rm", "-f", vm_name)
    assert not vm_dir.exists()
