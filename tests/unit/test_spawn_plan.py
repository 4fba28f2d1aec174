"""LaunchPlan and runtime.json round trips, the vm_dir lock, console capping, detach keys."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from ignitevm import proc
from ignitevm.errors import IgniteError
from ignitevm.network.base import PluginName, PortMapping, Protocol_
from ignitevm.records import RecordError, from_json, to_json
from ignitevm.spawn.__main__ import main as supervisor_main
from ignitevm.spawn.attach import CTRL_P, CTRL_Q, DetachScanner
from ignitevm.spawn.client.console import tail_lines, wait_for_boot
from ignitevm.spawn.client.stop import cleanup_stale, kill
from ignitevm.spawn.plan import LaunchPlan, read_plan
from ignitevm.spawn.relay import ConsoleLog
from ignitevm.spawn.relay import listen_attach as listen_unix
from ignitevm.spawn.runtime import (
    RuntimeState,
    RuntimeStatus,
    is_running,
    pid_in_dir,
    read_last_run,
    read_runtime,
    runtime_status,
    write_runtime,
)
from ignitevm.store.locks import is_locked
from ignitevm.store.locks import try_hold_lock as acquire_lock
from ignitevm.vmm.qmp import connect_unix
from tests.unit.conftest import make_machine


def _plan(vm_dir: Path) -> LaunchPlan:
    machine = make_machine(vm_dir, name="quiet-owl", vmlinux=Path("/k/vmlinux"))
    ports = (PortMapping(2222, 22), PortMapping(53, 53, Protocol_.UDP, "127.0.0.1"))
    return LaunchPlan(
        machine, network=PluginName.USER, ports=ports, console_limit_bytes=4096, boot_marker="MARK"
    )


def test_plan_round_trip(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    path = plan.write()
    assert json.loads(path.read_text())["machine"]["disks"][1]["readonly"] is True
    back = read_plan(tmp_path)
    assert back == plan
    assert back.machine.disks == plan.machine.disks
    req = back.network_request()
    assert (req.vm_uid, req.vm_dir, req.mac, req.ports) == (
        plan.uid,
        tmp_path,
        plan.machine.mac,
        plan.ports,
    )
    assert not list(tmp_path.glob(".launch.json.*"))  # atomic write left no temp file


def test_plan_ignores_unknown_fields(tmp_path: Path) -> None:
    data = to_json(_plan(tmp_path))
    data["from_a_newer_version"] = 1
    data["machine"]["also_newer"] = [1]
    assert from_json(LaunchPlan, data) == _plan(tmp_path)


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.pop("machine"),
        lambda d: d.update(vmm="bochs"),
        lambda d: d["machine"].update(vcpus="two"),
        lambda d: d["machine"]["disks"].append({"format": "raw"}),
        lambda d: d.update(ports={"host_port": 1}),
    ],
)
def test_a_damaged_plan_is_refused(tmp_path: Path, damage: object) -> None:
    data = to_json(_plan(tmp_path))
    damage(data)  # type: ignore[operator]
    with pytest.raises(RecordError):
        from_json(LaunchPlan, data)
    (tmp_path / "launch.json").write_text(json.dumps(data))
    with pytest.raises(IgniteError, match="cannot read the launch plan"):
        read_plan(tmp_path)
    (tmp_path / "launch.json").write_text('{"machine": {"uid"')  # truncated
    with pytest.raises(IgniteError, match="invalid JSON"):
        read_plan(tmp_path)


def test_runtime_round_trip(tmp_path: Path) -> None:
    status = RuntimeStatus(
        supervisor_pid=10,
        vmm="qemu",
        state=RuntimeState.RUNNING,
        started_at=1.5,
        vmm_pid=11,
        ip_addresses=("10.0.2.15",),
        network="user",
        vm_uid="u",
        vm_name="n",
        mac="02:00:00:00:00:01",
        ports=(PortMapping(2222, 22),),
    )
    write_runtime(tmp_path, status)
    assert read_runtime(tmp_path) == status
    assert status.network_request(tmp_path).ports == (PortMapping(2222, 22),)


def test_lock_is_the_truth(tmp_path: Path) -> None:
    write_runtime(tmp_path, RuntimeStatus(1, "qemu", RuntimeState.RUNNING, 0.0))
    assert not is_running(tmp_path)
    assert runtime_status(tmp_path) is None  # a leftover runtime.json is not "running"
    fd = acquire_lock(tmp_path)
    assert fd is not None
    try:
        assert is_locked(tmp_path) and is_running(tmp_path)
        assert runtime_status(tmp_path) is not None
        assert acquire_lock(tmp_path, wait=0.05) is None
        cleanup_stale(tmp_path)  # running: nothing is touched
        assert read_runtime(tmp_path) is not None
    finally:
        os.close(fd)
    assert not is_running(tmp_path)
    assert not is_running(tmp_path / "absent")


class RecordingPlugin:
    name = "none"

    def __init__(self) -> None:
        self.detached: list[str] = []

    def attach(self, req: object) -> object:
        raise AssertionError("not called")

    def detach(self, req: object) -> None:
        self.detached.append(getattr(req, "vm_uid", ""))


def test_cleanup_stale_is_idempotent(tmp_path: Path) -> None:
    write_runtime(
        tmp_path, RuntimeStatus(1, "qemu", RuntimeState.RUNNING, 0.0, vm_uid="abc", network="none")
    )
    (tmp_path / "qmp.sock").write_text("")
    (tmp_path / "attach.sock").write_text("")
    plugin = RecordingPlugin()
    asked: list[str] = []

    def plugins(name: str) -> RecordingPlugin:
        asked.append(name)
        return plugin

    cleanup_stale(tmp_path, plugins)  # type: ignore[arg-type]
    assert plugin.detached == ["abc"] and asked == ["none"]  # the plugin runtime.json names
    # the run's files are gone; what remains says the run was lost (restart policies)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last-run.json"]
    last = read_last_run(tmp_path)
    assert last is not None and last.outcome == "lost" and last.ended_at is None
    cleanup_stale(tmp_path, plugins)  # type: ignore[arg-type]
    assert plugin.detached == ["abc"]


def test_pid_in_dir(tmp_path: Path) -> None:
    assert pid_in_dir(os.getpid(), Path.cwd())
    assert not pid_in_dir(os.getpid(), tmp_path)
    assert not pid_in_dir(2**22 + 1, tmp_path)


def test_console_log_keeps_the_tail(tmp_path: Path) -> None:
    log = ConsoleLog(tmp_path / "console.log", 4096)
    for i in range(20):  # 700 bytes each: 5 fit in one file
        log.write(f"line {i:02}\n".encode() * 70)
    log.close()
    current = (tmp_path / "console.log").read_bytes()
    old = (tmp_path / "console.log.1").read_bytes()
    assert len(current) <= 4096 and len(old) <= 4096
    assert current.endswith(b"line 19\n")
    assert b"line 00" not in current + old and b"line 10" in old
    assert tail_lines(tmp_path / "console.log", 2) == ["line 19", "line 19"]
    assert tail_lines(tmp_path / "absent") == []


def test_detach_scanner() -> None:
    scanner = DetachScanner()
    assert scanner.feed(b"ls\r") == (b"ls\r", False)
    assert scanner.feed(bytes([CTRL_P, ord("x")])) == (bytes([CTRL_P, ord("x")]), False)
    # split across reads
    assert scanner.feed(b"a" + bytes([CTRL_P])) == (b"a", False)
    assert scanner.feed(bytes([CTRL_Q]) + b"ignored") == (b"", True)


class FailingPlugin(RecordingPlugin):
    def detach(self, req: object) -> None:
        raise IgniteError("cni DEL failed")


def test_cleanup_stale_keeps_the_record_when_detach_fails(tmp_path: Path) -> None:
    write_runtime(tmp_path, RuntimeStatus(1, "qemu", RuntimeState.RUNNING, 0.0, network="cni"))
    cleanup_stale(tmp_path, lambda name: FailingPlugin())  # type: ignore[arg-type,return-value]
    assert read_runtime(tmp_path) is not None  # the next cleanup tries again


@pytest.mark.parametrize(
    ("change", "word"),
    [({"network": "carrier-pigeon"}, "carrier-pigeon"), ({"vmm": "bochs"}, "bochs")],
)
def test_supervisor_reports_what_it_cannot_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict[str, str], word: str
) -> None:
    monkeypatch.chdir(tmp_path)  # the supervisor chdirs into the VM's directory
    replace(_plan(tmp_path), **change).write()  # type: ignore[arg-type]
    read_fd, write_fd = os.pipe()
    assert supervisor_main([str(tmp_path), "--ready-fd", str(write_fd), "--foreground"]) == 1
    msg = json.loads(os.read(read_fd, 4096))
    os.close(read_fd)
    assert msg["ok"] is False and word in msg["error"].lower()
    assert read_runtime(tmp_path) is None


def test_kill_while_starting_kills_the_supervisor(tmp_path: Path) -> None:
    """A supervisor still setting up (no VMM yet) is SIGKILLed; its records are cleaned."""
    code = (
        "import fcntl, os, sys, time; fd = os.open('.', os.O_RDONLY | os.O_DIRECTORY);"
        "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)"
    )
    child = proc.start([sys.executable, "-c", code], cwd=tmp_path, stdout=proc.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"locked\n"
        write_runtime(tmp_path, RuntimeStatus(child.pid, "qemu", RuntimeState.STARTING, 0.0))
        start = time.monotonic()
        kill(tmp_path)
        assert time.monotonic() - start < 3
        assert child.wait(5) == -9
        assert not is_running(tmp_path) and read_runtime(tmp_path) is None
    finally:
        child.kill()
        child.wait()


def test_wait_for_boot_follows_rotation_and_reports_the_console(tmp_path: Path) -> None:
    fd = acquire_lock(tmp_path)  # "running"
    assert fd is not None
    try:
        console = ConsoleLog(tmp_path / "console.log", 4096)
        console.write(b"booting\n" + b"x" * 4080 + b"\nhalf a MAR")  # > 4096 with what follows

        def later() -> None:
            time.sleep(0.2)
            console.write(b"KER\n")  # rotates: the marker is split across the two files

        writer = threading.Thread(target=later)
        writer.start()
        wait_for_boot(tmp_path, "half a MARKER", 5)
        writer.join()
        assert (tmp_path / "console.log.1").read_bytes().endswith(b"half a MAR")
        console.write(b"MARKER here\n")
        wait_for_boot(tmp_path, "MARKER", 5)
        with pytest.raises(IgniteError, match=r"did not boot in 0\.2 s") as err:
            wait_for_boot(tmp_path, "NEVER", 0.2)
        assert "MARKER here" in str(err.value)  # the console's last lines are shown
    finally:
        os.close(fd)
    with pytest.raises(IgniteError, match="stopped before it booted"):
        wait_for_boot(tmp_path, "NEVER", 5)


def test_attach_socket_with_a_path_longer_than_sun_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 110)
    deep.mkdir()
    server = listen_unix(deep / "attach.sock")
    try:
        with connect_unix(deep / "attach.sock", timeout=2) as client:
            client.sendall(b"hi")
            server.setblocking(True)
            conn, _ = server.accept()
            with conn:
                assert conn.recv(2) == b"hi"
    finally:
        server.close()
