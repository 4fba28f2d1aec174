"""The supervisor running a VM under Firecracker, with a fake `firecracker` on PATH that serves
the API on its --api-sock and plays the guest on stdio: the real argv, the configuration calls
and InstanceStart, the console relayed into console.log and to attach clients, graceful stop by
SendCtrlAltDel, the hard stop by SIGKILL, a refused configuration as a start failure."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ignitevm.network.base import PluginName
from ignitevm.network.none import NoNetwork
from ignitevm.spawn.plan import LaunchPlan
from ignitevm.spawn.protocol import Ready
from ignitevm.spawn.runtime import read_runtime
from ignitevm.spawn.supervisor import Supervisor
from ignitevm.vmm.base import Disk, VMMName
from ignitevm.vmm.firecracker import FirecrackerDriver
from tests.unit.conftest import make_machine, read_until, wait_for

pytestmark = pytest.mark.usefixtures("restore_signals")

FAKE_FIRECRACKER = r"""
import json, os, sys, threading
from http.server import BaseHTTPRequestHandler
from socketserver import UnixStreamServer
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
if not os.path.exists(args["--log-path"]):  # like Firecracker: it opens, never creates it
    print("no log file", file=sys.stderr); sys.exit(1)
mode = os.environ.get("FAKE_FC_MODE", "obedient")
def say(text):
    os.write(1, (text + "\n").encode())
class H(BaseHTTPRequestHandler):
    def do_PUT(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        say("api: PUT " + self.path)
        action = body.get("action_type")
        if action == "InstanceStart":
            say("fake-fc: booted")
        elif action == "SendCtrlAltDel":
            say("fake-fc: ctrl-alt-del, " + ("bye" if mode == "obedient" else "ignored"))
        if mode == "refuse" and self.path == "/boot-source":
            out = json.dumps({"fault_message": "kernel not found"}).encode()
            self.send_response(400)
        else:
            out = b""
            self.send_response(204)
        self.send_header("Content-Length", str(len(out))); self.end_headers()
        if out:
            self.wfile.write(out)
        if action == "SendCtrlAltDel" and mode == "obedient":
            os._exit(0)
    def do_GET(self):
        out = json.dumps({"state": "Not started"}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(out)))
        self.end_headers(); self.wfile.write(out)
    def log_message(self, *a):
        pass
class S(UnixStreamServer):
    def get_request(self):
        return self.socket.accept()[0], ("local", 0)
srv = S(args["--api-sock"], H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
while True:
    line = os.read(0, 4096)
    if not line:
        break
    say("echo: " + line.decode().strip())
"""


def _plan(vm_dir: Path) -> LaunchPlan:
    disks = (Disk(vm_dir / "image.ext4", "raw", readonly=True), Disk(vm_dir / "rw.ext4", "raw"))
    machine = make_machine(vm_dir, memory_mib=128, disks=disks,
                           cmdline="console=ttyS0 ignite.cow=overlay")  # fmt: skip
    return LaunchPlan(machine, vmm=VMMName.FIRECRACKER, network=PluginName.NONE, stop_timeout=0.5,
                      jail=False)  # fmt: skip


def _run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, driver: Callable[[Path], None]
) -> tuple[int, dict[str, object]]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "firecracker"
    fake.write_text(f"#!{sys.executable}\n{FAKE_FIRECRACKER}")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_FC_MODE", mode)
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
    code = Supervisor(
        _plan(vm_dir), Ready(write_fd), FirecrackerDriver(vm_dir), NoNetwork(), repress=0.1
    ).run()
    thread.join(10)
    ready: dict[str, object] = json.loads(os.read(read_fd, 4096))
    os.close(read_fd)
    if errors:
        raise errors[0]
    # the run's socket, runtime.json and attach socket are gone; logs and the end record stay
    left = sorted(p.name for p in vm_dir.iterdir())
    assert left == ["console.log", "firecracker.log", "firecracker.metrics", "last-run.json"]
    return code, ready


def _running(vm_dir: Path) -> bool:
    status = read_runtime(vm_dir)
    return status is not None and str(status.state) == "running"


def test_configured_started_relayed_and_stopped_by_ctrl_alt_del(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def driver(vm_dir: Path) -> None:
        wait_for(lambda: _running(vm_dir) and (vm_dir / "attach.sock").exists())
        status = read_runtime(vm_dir)
        assert status is not None and status.vmm == "firecracker"
        with socket.socket(socket.AF_UNIX) as a:
            a.connect(str(vm_dir / "attach.sock"))
            a.sendall(b"hello\n")
            read_until(a, b"echo: hello")
            os.kill(os.getpid(), signal.SIGTERM)
            read_until(a, b"ctrl-alt-del, bye")

    code, ready = _run(tmp_path, monkeypatch, "obedient", driver)
    assert code == 0 and ready["ok"] is True
    console = (tmp_path / "vm" / "console.log").read_text()
    api = [line.removeprefix("api: ") for line in console.splitlines() if line.startswith("api:")]
    assert api == [
        "PUT /metrics",
        "PUT /machine-config",
        "PUT /boot-source",
        "PUT /drives/disk0",
        "PUT /drives/disk1",
        "PUT /actions",  # InstanceStart
        "PUT /actions",  # SendCtrlAltDel
    ]
    assert "fake-fc: booted" in console and "echo: hello" in console


def test_hard_stop_is_sigkill_when_ctrl_alt_del_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def driver(vm_dir: Path) -> None:
        wait_for(lambda: _running(vm_dir))
        os.kill(os.getpid(), signal.SIGTERM)

    start = time.monotonic()
    _run(tmp_path, monkeypatch, "deaf", driver)
    assert time.monotonic() - start < 5
    console = (tmp_path / "vm" / "console.log").read_text()
    assert console.count("ctrl-alt-del, ignored") >= 2  # pressed again, then killed


def test_refused_configuration_fails_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, ready = _run(tmp_path, monkeypatch, "refuse", lambda vm_dir: None)
    assert code == 1 and ready["ok"] is False
    assert "boot-source" in str(ready["error"]) and "kernel not found" in str(ready["error"])
