"""The supervisor's loop against a fake QEMU (a Python script speaking QMP on stdio's side):
console relay, attach clients, SIGTERM -> power button -> quit -> SIGKILL, cleanup."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ignitevm.network.base import Attachment
from ignitevm.network.none import NoNetwork
from ignitevm.spawn.plan import LaunchPlan
from ignitevm.spawn.protocol import Ready
from ignitevm.spawn.runtime import read_runtime
from ignitevm.spawn.supervisor import Supervisor
from ignitevm.vmm.base import MachineSpec
from ignitevm.vmm.qemu import QemuDriver
from tests.unit.conftest import make_machine, read_until, wait_for

pytestmark = pytest.mark.usefixtures("restore_signals")

FAKE_QEMU = r"""
import json, os, select, socket, sys
mode = sys.argv[1]
srv = socket.socket(fileno=int(sys.argv[2]))  # the QMP socket the driver passes
print("fake-vm: booted", flush=True)
conns, ins = [], [srv, sys.stdin.fileno()]
while True:
    for r in select.select(ins, [], [])[0]:
        if r is srv:
            c, _ = srv.accept(); ins.append(c)
            c.sendall(b'{"QMP": {"version": {}, "capabilities": []}}\r\n')
        elif r == sys.stdin.fileno():
            line = os.read(r, 4096)
            if not line:
                continue
            print("echo: " + line.decode().strip(), flush=True)
        else:
            data = r.recv(4096)
            if not data:
                ins.remove(r); continue
            for raw in data.splitlines():
                cmd = json.loads(raw)["execute"]
                print("qmp: " + cmd, flush=True)
                r.sendall(b'{"return": {}}\r\n')
                if cmd == "system_powerdown" and mode == "obedient":
                    print("fake-vm: power button, bye", flush=True); sys.exit(0)
                if cmd == "quit" and mode != "stubborn":
                    sys.exit(0)
"""


class FakeQemu(QemuDriver):
    """The real QEMU driver (QMP readiness, power button, quit) around a fake QEMU script."""

    hard_stop_grace = 0.3

    def __init__(self, vm_dir: Path, script: Path, mode: str) -> None:
        super().__init__(vm_dir)
        self.script, self.mode = script, mode

    def argv(self, spec: MachineSpec, att: Attachment, *, qmp_fd: int, **fds: object) -> list[str]:
        return [sys.executable, str(self.script), self.mode, str(qmp_fd)]


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, driver: Any) -> int:
    script = tmp_path / "fake_qemu.py"
    script.write_text(FAKE_QEMU)

    vm_dir = tmp_path / "vm"
    vm_dir.mkdir()
    read_fd, write_fd = os.pipe()
    errors: list[BaseException] = []

    def drive() -> None:
        try:
            driver(vm_dir)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=drive, daemon=True)
    thread.start()
    driver = FakeQemu(vm_dir, script, mode)
    plan = LaunchPlan(make_machine(vm_dir, memory_mib=64, disks=()), stop_timeout=0.5, jail=False)
    code = Supervisor(plan, Ready(write_fd), driver, NoNetwork(), repress=0.1).run()
    thread.join(10)
    ready = json.loads(os.read(read_fd, 4096))
    os.close(read_fd)
    assert ready["ok"] is True and ready["pid"] == os.getpid()
    if errors:
        raise errors[0]
    # everything of the run is gone; the console and the record of how it ended stay
    assert sorted(p.name for p in vm_dir.iterdir()) == ["console.log", "last-run.json"]
    return code


def _state(vm_dir: Path) -> str | None:
    status = read_runtime(vm_dir)
    return None if status is None else str(status.state)


def test_relay_attach_and_graceful_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def driver(vm_dir: Path) -> None:
        wait_for(lambda: (vm_dir / "attach.sock").exists())
        wait_for(lambda: _state(vm_dir) == "running")
        with socket.socket(socket.AF_UNIX) as a, socket.socket(socket.AF_UNIX) as b:
            a.connect(str(vm_dir / "attach.sock"))
            b.connect(str(vm_dir / "attach.sock"))
            a.sendall(b"hello\n")
            read_until(a, b"echo: hello")
            read_until(b, b"echo: hello")  # every client sees the output
            os.kill(os.getpid(), signal.SIGTERM)
            read_until(a, b"power button")
            a.settimeout(5)
            while a.recv(4096):  # the supervisor closes clients when the VM is gone
                pass

    assert _run(tmp_path, monkeypatch, "obedient", driver) == 0
    console = (tmp_path / "vm" / "console.log").read_text()
    assert "fake-vm: booted" in console and "echo: hello" in console
    assert "qmp: system_powerdown" in console and "qmp: quit" not in console


def test_hard_stop_when_the_guest_ignores_the_button(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def driver(vm_dir: Path) -> None:
        wait_for(lambda: (vm_dir / "attach.sock").exists())
        os.kill(os.getpid(), signal.SIGTERM)

    _run(tmp_path, monkeypatch, "deaf", driver)
    console = (tmp_path / "vm" / "console.log").read_text()
    # pressed again while waiting (a press before acpid listens is lost), then QMP quit
    assert console.count("qmp: system_powerdown") >= 2 and "qmp: quit" in console


def test_sigkill_when_quit_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def driver(vm_dir: Path) -> None:
        wait_for(lambda: (vm_dir / "attach.sock").exists())
        os.kill(os.getpid(), signal.SIGTERM)

    start = time.monotonic()
    _run(tmp_path, monkeypatch, "stubborn", driver)
    assert time.monotonic() - start < 5
    assert "qmp: quit" in (tmp_path / "vm" / "console.log").read_text()
