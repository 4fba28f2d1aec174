"""The detached supervisor with a real QEMU (TCG) guest: boot to the marker, console and attach,
graceful stop through the ACPI power button, the hard-stop fallback, kill, kill -9 of QEMU and
of the supervisor, and a supervisor that outlives the process that launched it."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ignitevm import proc
from ignitevm.errors import IgniteError
from ignitevm.kernel.cmdline import kernel_cmdline
from ignitevm.network.base import PortMapping
from ignitevm.spawn import (
    LaunchPlan,
    attach,
    cleanup_stale,
    is_running,
    kill,
    launch,
    request_stop,
    runtime_status,
    wait_for_boot,
)
from ignitevm.spawn.control import wait_until_stopped
from ignitevm.spawn.runtime import pid_in_dir, read_runtime
from ignitevm.vmm.base import Disk, mac_for_uid
from ignitevm.vmm.qmp import connect_unix
from tests.integration.test_supervisor_guest import MARKER, Guest, ensure_guest, make_disk

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.timeout(180),
]

BOOT_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def guest() -> Guest:
    proc.require_tool("qemu-system-x86_64")
    return ensure_guest()


def _processes_in(vm_dir: Path) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
            and pid_in_dir(int(p.name), vm_dir)]  # fmt: skip


@pytest.fixture
def vm_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("IGNITE_STATE_DIR", str(tmp_path / "state"))
    path = tmp_path / "state" / "vm" / "0123456789abcdef"
    path.mkdir(parents=True)
    yield path
    try:
        kill(path)
    finally:  # whatever happened, no process of this VM survives the test
        for pid in _processes_in(path):
            os.kill(pid, signal.SIGKILL)


def _plan(guest: Guest, vm_dir: Path, **kw: object) -> LaunchPlan:
    uid = vm_dir.name
    values: dict[str, object] = {
        "uid": uid,
        "name": "test-vm",
        "vm_dir": vm_dir,
        "vcpus": 1,
        "memory_mib": 256,
        "vmlinux": guest.vmlinux,
        "initrd": guest.initrd,
        "cmdline": kernel_cmdline(),
        "disks": (Disk(make_disk(vm_dir / "disk.raw"), "raw"),),
        "mac": mac_for_uid(uid),
        "network": "none",
        "boot_marker": MARKER,
        "stop_timeout": 10.0,
    }
    values.update(kw)
    return LaunchPlan(**values)  # type: ignore[arg-type]


def _boot(guest: Guest, vm_dir: Path, **kw: object) -> int:
    pid = launch(_plan(guest, vm_dir, **kw))
    wait_for_boot(vm_dir, MARKER, BOOT_TIMEOUT)
    return pid


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _say(vm_dir: Path, line: str, expect: str) -> str:
    """Type a line on the guest's console through the attach socket; read until ``expect``."""
    with connect_unix(vm_dir / "attach.sock", timeout=30) as sock:
        sock.sendall(line.encode() + b"\n")
        data = b""
        while expect.encode() not in data:
            chunk = sock.recv(4096)
            assert chunk, f"attach socket closed before {expect!r}: {data!r}"
            data += chunk
        return data.decode(errors="replace")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_boot_attach_and_graceful_stop(guest: Guest, vm_dir: Path) -> None:
    port = _free_port()
    ports = (PortMapping(port, 22, host_ip="127.0.0.1"),)
    pid = _boot(guest, vm_dir, network="user", ports=ports)
    console = (vm_dir / "console.log").read_text()
    assert MARKER in console and "disks: vda" in console and "eth0" in console
    assert "ip=10.0.2.15::10.0.2.2:255.255.255.0:test-vm:eth0:off:10.0.2.3" in console
    status = runtime_status(vm_dir)
    assert status is not None and status.supervisor_pid == pid and is_running(vm_dir)
    assert status.vmm == "qemu" and status.ip_addresses == ("10.0.2.15",)
    assert status.vmm_pid is not None and pid_in_dir(status.vmm_pid, vm_dir)
    assert _rss_kib(pid) < 40 * 1024, "the supervisor must stay small"
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # QEMU forwards the published port

    assert "echo: hello" in _say(vm_dir, "hello", "echo: hello")
    # attach(): typed input reaches the guest, Ctrl-P Ctrl-Q detaches and the VM keeps running
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    os.write(in_w, b"from-attach\n")
    time.sleep(0.5)
    os.write(in_w, b"\x10\x11")
    attach(vm_dir, in_r, out_w)
    for fd in (in_r, in_w, out_w):
        os.close(fd)
    os.close(out_r)
    assert is_running(vm_dir)
    wait_for_boot(vm_dir, "echo: from-attach", 10)

    assert request_stop(vm_dir, 30)
    assert not is_running(vm_dir) and runtime_status(vm_dir) is None
    assert "guest: power button pressed" in (vm_dir / "console.log").read_text()
    assert not (vm_dir / "runtime.json").exists() and not (vm_dir / "qmp.sock").exists()
    assert not _processes_in(vm_dir)


def test_hard_stop_when_the_guest_ignores_the_power_button(guest: Guest, vm_dir: Path) -> None:
    pid = _boot(guest, vm_dir, stop_timeout=2.0)
    _say(vm_dir, "nobutton", "guest: acpid stopped")
    assert not request_stop(vm_dir, 2.0)  # the button is pressed, nobody listens
    assert is_running(vm_dir)
    os.kill(pid, signal.SIGTERM)  # the supervisor's own path: button, timeout, QMP quit
    assert wait_until_stopped(vm_dir, 15)
    log = (vm_dir / "supervisor.log").read_text()
    assert "hard stop" in log and "supervisor exits" in log
    assert not _processes_in(vm_dir)


def test_kill_and_restart(guest: Guest, vm_dir: Path) -> None:
    _boot(guest, vm_dir)
    start = time.monotonic()
    kill(vm_dir)
    assert time.monotonic() - start < 5
    assert not is_running(vm_dir) and not _processes_in(vm_dir)
    assert not (vm_dir / "runtime.json").exists()
    # a stopped VM starts again (Ignite #196); this time it powers off by itself
    _boot(guest, vm_dir)
    _say(vm_dir, "poweroff", "echo: poweroff")
    assert wait_until_stopped(vm_dir, 15)
    with pytest.raises(IgniteError, match="stopped before it booted"):
        wait_for_boot(vm_dir, "NO-SUCH-MARKER", 10)


def test_kill9_of_qemu(guest: Guest, vm_dir: Path) -> None:
    launch(_plan(guest, vm_dir))
    status = read_runtime(vm_dir)
    assert status is not None and status.vmm_pid is not None
    os.kill(status.vmm_pid, signal.SIGKILL)
    assert wait_until_stopped(vm_dir, 10)  # the supervisor noticed and cleaned up
    assert read_runtime(vm_dir) is None and not (vm_dir / "attach.sock").exists()
    assert "exited with code -9" in (vm_dir / "supervisor.log").read_text()
    with pytest.raises(IgniteError, match="stopped before it booted"):
        wait_for_boot(vm_dir, MARKER, 10)


class RecordingNetwork:
    """The ``none`` plugin, counting detaches (cleanup_stale is the part under test)."""

    name = "none"

    def __init__(self) -> None:
        self.detached = 0

    def attach(self, req: object) -> object:
        raise AssertionError("cleanup_stale must not attach")

    def detach(self, req: object) -> None:
        self.detached += 1


def test_kill9_of_the_supervisor(guest: Guest, vm_dir: Path) -> None:
    pid = launch(_plan(guest, vm_dir))
    status = read_runtime(vm_dir)
    assert status is not None and status.vmm_pid is not None
    os.kill(pid, signal.SIGKILL)
    assert wait_until_stopped(vm_dir, 2), "the kernel releases the lock with the process"
    deadline = time.monotonic() + 5
    while pid_in_dir(status.vmm_pid, vm_dir):  # PR_SET_PDEATHSIG
        assert time.monotonic() < deadline, "QEMU outlived its supervisor"
        time.sleep(0.05)
    assert runtime_status(vm_dir) is None
    assert read_runtime(vm_dir) is not None  # the record a cleanup needs is still there
    net = RecordingNetwork()
    cleanup_stale(vm_dir, net)  # type: ignore[arg-type]
    cleanup_stale(vm_dir, net)  # type: ignore[arg-type]
    assert net.detached == 1
    assert read_runtime(vm_dir) is None and not (vm_dir / "qmp.sock").exists()
    assert not _processes_in(vm_dir)


def test_supervisor_outlives_its_launcher(guest: Guest, vm_dir: Path) -> None:
    plan = _plan(guest, vm_dir)
    plan.write()
    code = (
        "import sys; from pathlib import Path; from ignitevm.spawn import launch, read_plan;"
        f"print(launch(read_plan(Path({str(vm_dir)!r}))))"
    )
    out = proc.output([sys.executable, "-c", code], timeout=60)
    pid = int(out.split()[-1])
    wait_for_boot(vm_dir, MARKER, BOOT_TIMEOUT)  # the launcher is gone, the VM boots on
    assert is_running(vm_dir) and pid_in_dir(pid, vm_dir)
    assert os.getsid(pid) != os.getsid(0)  # its own session: no terminal to lose
    assert int(Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[1]) != os.getpid()


def test_socket_paths_longer_than_sun_path(guest: Guest, tmp_path: Path) -> None:
    """A deep state directory: QMP (relative to QEMU's cwd) and attach (/proc/self/fd) work."""
    deep = tmp_path / ("s" * 80) / "vm" / "0123456789abcdef"
    deep.mkdir(parents=True)
    assert len(str(deep / "attach.sock")) > 108
    try:
        _boot(guest, deep)
        assert "echo: deep" in _say(deep, "deep", "echo: deep")
        assert request_stop(deep, 30)
    finally:
        kill(deep)
        for pid in _processes_in(deep):
            os.kill(pid, signal.SIGKILL)


def test_launch_failure_is_reported(guest: Guest, vm_dir: Path) -> None:
    plan = _plan(guest, vm_dir, vmlinux=vm_dir / "no-such-vmlinux")
    with pytest.raises(IgniteError, match="did not start") as err:
        launch(plan)
    assert "no-such-vmlinux" in str(err.value)  # QEMU's own message is shown
    assert not is_running(vm_dir) and read_runtime(vm_dir) is None
