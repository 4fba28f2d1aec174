"""`ignite` commands that only read work for an unprivileged user (Ignite #137 #406 #672): ps,
inspect, logs, image ls, kernel ls, version, --help, completion, against a state directory that
others may read, with a VM running (its lock is probed) and after its supervisor was killed
(stale runtime.json: nothing to undo for a reader, no error either)."""

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
    """A state dir readable by others (mode 0755 all the way), with the session's kernel and
    image hard-linked in; removed with every VM in it afterwards."""
    check = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version_info[:2] >= (3, 11))"],
        capture_output=True, text=True,
    )  # fmt: skip
    if check.stdout.strip() != "True":
        pytest.skip(f"{SYSTEM_PYTHON} is not Python >= 3.11")
    base = Path(tempfile.mkdtemp(prefix="ignite-ro-", dir="/tmp"))
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


def _as_nobody(ignite: Ignite, *args: str) -> subprocess.CompletedProcess[str]:
    subprocess.run(["chmod", "-R", "o+rX", str(ignite.state_dir.parent)], check=True)
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
    assert proc.returncode == 0, f"ignite {' '.join(args)} as nobody: {proc.stderr}"
    return proc


def test_read_only_commands_as_nobody(shared_state: Ignite, vm_name: str) -> None:
    ro = shared_state
    ro("run", "--name", vm_name, "--memory", "256MB", "--network-plugin", "none")
    assert vm_name in _as_nobody(ro, "ps").stdout
    assert "Up " in _as_nobody(ro, "ps").stdout
    data = json.loads(_as_nobody(ro, "inspect", "vm", vm_name).stdout)
    assert data["status"]["running"] is True
    assert "ignitevm-init: exec" in _as_nobody(ro, "logs", vm_name).stdout
    assert "ignitevm/default" in _as_nobody(ro, "image", "ls").stdout
    assert len(_as_nobody(ro, "kernel", "ls").stdout.splitlines()) == 2  # header + the kernel
    assert "qemu" in _as_nobody(ro, "version").stdout
    assert "Usage" in _as_nobody(ro, "--help").stdout
    assert _as_nobody(ro, "completion", "bash").stdout.strip()
    # the supervisor dies (kill -9): a reader sees the truth and changes nothing
    vm_dir = ro.state_dir / "vm" / data["metadata"]["uid"]
    runtime = json.loads((vm_dir / "runtime.json").read_text())
    os.kill(runtime["supervisor_pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while "Up " in _as_nobody(ro, "ps", "-a").stdout and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "Stopped" in _as_nobody(ro, "ps", "-a").stdout
    assert (vm_dir / "runtime.json").exists()  # left for root's cleanup
    ro("rm", "-f", vm_name)
    assert not vm_dir.exists()
