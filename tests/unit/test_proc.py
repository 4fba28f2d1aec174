"""proc.py: the one subprocess helper (docs/architecture.md "Layers")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _run_child_then_kill_parent(tmp_path: Path, die_with_parent: bool) -> int:
    """A Python process runs ``sh`` through proc.run (as an import runs mkfs.ext4) and is
    killed with SIGKILL; returns the tool's pid."""
    pidfile = tmp_path / "tool.pid"
    code = (
        "import sys; from ignitevm import proc; "
        "proc.run(['sh', '-c', 'echo $$ > ' + sys.argv[1] + '; exec sleep 60'], "
        f"die_with_parent={die_with_parent})"
    )
    parent = subprocess.Popen([sys.executable, "-c", code, str(pidfile)], cwd=ROOT)
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=10)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    return int(pidfile.read_text())


def test_a_tool_dies_with_a_killed_caller(tmp_path: Path) -> None:
    pid = _run_child_then_kill_parent(tmp_path, die_with_parent=True)
    wait_for(lambda: not _alive(pid), timeout=5)


def test_a_tool_may_outlive_its_caller_when_asked(tmp_path: Path) -> None:
    pid = _run_child_then_kill_parent(tmp_path, die_with_parent=False)
    try:
        assert _alive(pid)
    finally:
        os.kill(pid, signal.SIGKILL)


def test_run_still_reports_exit_codes() -> None:
    from ignitevm import proc
    from ignitevm.errors import CommandError

    assert proc.run(["true"]).returncode == 0
    with pytest.raises(CommandError, match="exited with code 3"):
        proc.run(["sh", "-c", "exit 3"])
