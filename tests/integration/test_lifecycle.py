"""VM lifecycle on real QEMU (TCG here): run, ps, logs, stop, start, kill, rm, and the truth
about "running" after crashes. Issue 3's acceptance."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import Ignite

pytestmark = pytest.mark.integration

# Runs at every boot of the default image (rcS runs /etc/init.d/S*): appends to a file on the
# VM's own disk and prints what the disk holds, so the console shows persistence and isolation.
PROBE = """#!/bin/sh
hostname >> /root/boots
echo "probe: boots=$(wc -l < /root/boots) rootkb=$(df -k / | awk 'NR==2{print $2}') \
owners=$(sort -u /root/boots | tr '\\n' ',')"
"""


def _probe(tmp_path: Path) -> str:
    path = tmp_path / "S50probe"
    path.write_text(PROBE)
    path.chmod(0o755)
    return f"{path}:/etc/init.d/S50probe"


def _probe_lines(console: str) -> list[str]:
    return re.findall(r"probe: .*", console)


def _wait_console(ignite: Ignite, vm: str, pattern: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = ignite.console(vm)
        if re.search(pattern, text):
            return text
        time.sleep(0.5)
    raise AssertionError(f"{pattern!r} not on {vm}'s console:\n{ignite.console(vm)[-3000:]}")


def _ps_row(ignite: Ignite, name: str) -> list[str]:
    for line in ignite("ps", "-a").stdout.splitlines():
        if line.split() and line.split()[-1] == name:
            return line.split()
    raise AssertionError(f"{name} not in ps -a")


def test_run_stop_start_kill_rm(ignite: Ignite, vm_name: str, tmp_path: Path) -> None:
    out = ignite("run", "--name", vm_name, "--memory", "256MB", "--size", "2GB",
                 "--copy-files", _probe(tmp_path)).stdout  # fmt: skip
    assert vm_name in out
    assert vm_name in ignite("ps").stdout
    assert ignite.inspect(vm_name)["status"]["running"] is True  # type: ignore[index]

    console = _wait_console(ignite, vm_name, r"probe: boots=1 ")
    assert "ignitevm-init: exec" in console
    # --size is the size the guest sees: the root filesystem grew to fill 2 GiB.
    rootkb = int(re.search(r"rootkb=(\d+)", console).group(1))  # type: ignore[union-attr]
    assert 1.8 * 2**20 < rootkb <= 2 * 2**20, rootkb

    started = time.monotonic()
    ignite("stop", vm_name)
    assert time.monotonic() - started < 25, "the guest did not power off on the ACPI button"
    console = ignite.console(vm_name)
    assert "power button pressed" in console and "shutting down" in console
    assert vm_name not in ignite("ps").stdout
    assert "Stopped" in _ps_row(ignite, vm_name)
    assert ignite.inspect(vm_name)["status"]["running"] is False  # type: ignore[index]

    ignite("start", vm_name)  # a stopped VM starts again (Ignite #196)
    console = _wait_console(ignite, vm_name, r"probe: boots=2 ")
    assert f"owners={vm_name}," in console  # the data written at the first boot is still there

    ignite("kill", vm_name)
    assert "Stopped" in _ps_row(ignite, vm_name)
    uid = ignite.inspect(vm_name)["metadata"]["uid"]  # type: ignore[index]
    ignite("start", vm_name)
    ignite("rm", "-f", vm_name)  # rm -f of a running VM stops it first
    assert vm_name not in ignite("ps", "-a").stdout
    assert not (ignite.state_dir / "vm" / str(uid)).exists()
    assert _qemu_pids(str(uid)) == []


def test_two_vms_from_one_image_do_not_share_writes(
    ignite: Ignite, vm_name: str, tmp_path: Path
) -> None:
    probe = _probe(tmp_path)
    a, b = f"{vm_name}-a", f"{vm_name}-b"
    ignite("run", "--name", a, "--memory", "256MB", "--copy-files", probe)
    ignite("run", "--name", b, "--memory", "256MB", "--copy-files", probe)
    console_a = _wait_console(ignite, a, r"probe: boots=1 ")
    console_b = _wait_console(ignite, b, r"probe: boots=1 ")
    assert f"owners={a}," in console_a
    assert f"owners={b}," in console_b  # b's disk has no trace of a's write


def _qemu_pids(uid: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"qemu-system.*{uid}"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _runtime(ignite: Ignite, vm: str) -> dict[str, object]:
    uid = ignite.inspect(vm)["metadata"]["uid"]  # type: ignore[index]
    data: dict[str, object] = json.loads(
        (ignite.state_dir / "vm" / str(uid) / "runtime.json").read_text()
    )
    return data


@pytest.mark.parametrize("victim", ["supervisor_pid", "vmm_pid"])
def test_kill_9_is_seen_as_stopped_and_start_works(
    ignite: Ignite, vm_name: str, victim: str
) -> None:
    ignite("run", "--name", vm_name, "--memory", "256MB")
    pid = int(_runtime(ignite, vm_name)[victim])  # type: ignore[call-overload]
    uid = str(ignite.inspect(vm_name)["metadata"]["uid"])  # type: ignore[index]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while "Stopped" not in _ps_row(ignite, vm_name):
        assert time.monotonic() < deadline, "ps still shows the VM running after kill -9"
        time.sleep(0.2)
    assert ignite.inspect(vm_name)["status"]["running"] is False  # type: ignore[index]
    deadline = time.monotonic() + 10
    while _qemu_pids(uid):  # the VMM dies with its supervisor (PR_SET_PDEATHSIG)
        assert time.monotonic() < deadline, "QEMU outlived its supervisor"
        time.sleep(0.2)
    ignite("start", vm_name)
    assert vm_name in ignite("ps").stdout


def test_parallel_runs_all_succeed(ignite: Ignite, vm_name: str) -> None:
    env = {**os.environ, "IGNITE_STATE_DIR": str(ignite.state_dir)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ignitevm.cli",
                "--ignite-config",
                str(ignite.config),
                "run",
                "--name",
                f"{vm_name}-{i}",
                "--memory",
                "192MB",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    results = [p.communicate(timeout=400) for p in procs]
    for p, (_out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    running = ignite("ps").stdout
    for i in range(3):
        assert f"{vm_name}-{i}" in running


def test_errors_are_one_clear_line(ignite: Ignite, vm_name: str) -> None:
    cases = [
        (["run", "no-such-image-xyz:1", "--name", vm_name], "no-such-image"),
        (["create", "--size", "lots", "--name", vm_name], "--size 'lots'"),
        (["create", "--memory", "16MB", "--name", vm_name], "too little"),
        (["start", "no-such-vm-xyz"], "no-such-vm-xyz"),
        (["rm", "no-such-vm-xyz"], "no-such-vm-xyz"),
    ]
    before = ignite("-q", "ps", "-a").stdout
    for args, needle in cases:
        proc = ignite(*args, check=False, timeout=120)
        assert proc.returncode != 0, args
        assert proc.stderr.startswith("error: "), proc.stderr
        assert needle in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert ignite("-q", "ps", "-a").stdout == before  # the store is unchanged


def test_missing_qemu_is_a_clear_error(ignite: Ignite, vm_name: str) -> None:
    ignite("create", "--name", vm_name, "--memory", "256MB")
    saved = ignite.env
    ignite.env = {"PATH": "/nonexistent"}
    try:
        proc = ignite("start", vm_name, check=False)
    finally:
        ignite.env = saved
    assert proc.returncode != 0
    assert "qemu" in proc.stderr and "apt-get install qemu-system-x86" in proc.stderr
    assert "Stopped" in _ps_row(ignite, vm_name)
