"""The Firecracker provider: command line, the API calls it generates, its HTTP client against a
fake API server on a unix socket, the supervisor's driver, and the auto choice of the VMM."""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from socketserver import UnixStreamServer
from typing import Any

import pytest

from ignitevm.errors import IgniteError
from ignitevm.hostinfo import KVMFacts, kvm_problem, read_kvm_facts
from ignitevm.network.base import Attachment
from ignitevm.vmm import firecracker as fc
from ignitevm.vmm.base import Accel, Disk, MachineSpec, VMMName
from ignitevm.vmm.choose import choose_vmm
from ignitevm.vmm.driver import driver_for
from ignitevm.vmm.firecracker import FirecrackerDriver
from ignitevm.vmm.qemu import QemuDriver

GOOD = KVMFacts(dev_kvm_exists=True, dev_kvm_usable=True, nested_pvm=False, hw_virt=True)
PVM = KVMFacts(dev_kvm_exists=True, dev_kvm_usable=True, nested_pvm=True, hw_virt=False)


def _spec(vm_dir: Path, disks: tuple[Disk, ...] = ()) -> MachineSpec:
    return MachineSpec(
        uid="0123456789abcdef",
        name="fc",
        vm_dir=vm_dir,
        vcpus=2,
        memory_mib=256,
        vmlinux=Path("/k/vmlinux"),
        initrd=vm_dir / "initrd",
        cmdline="console=ttyS0 i8042.nokbd ignite.cow=overlay",
        disks=disks
        or (
            Disk(Path("/img/image.ext4"), "raw", readonly=True),
            Disk(vm_dir / "rw.ext4", "raw"),
        ),
        mac="02:11:22:33:44:55",
    )


def test_argv_socket_logger_and_long_paths(tmp_path: Path) -> None:
    argv = fc.build_firecracker_argv(_spec(tmp_path), "/bin/fc")
    assert argv[:3] == ["/bin/fc", "--api-sock", str(tmp_path / "firecracker.sock")]
    assert argv[argv.index("--id") + 1] == "0123456789abcdef"
    assert argv[argv.index("--log-path") + 1] == str(tmp_path / "firecracker.log")
    deep = tmp_path / ("d" * 120)
    assert fc.build_firecracker_argv(_spec(deep))[2] == "firecracker.sock"  # relative to cwd


def test_config_calls_are_the_documented_api(tmp_path: Path) -> None:
    att = Attachment(netns="ignite-x", tap="tap0")
    calls = fc.config_calls(_spec(tmp_path), att)
    assert [(c.method, c.path) for c in calls] == [
        ("PUT", "/metrics"),
        ("PUT", "/machine-config"),
        ("PUT", "/boot-source"),
        ("PUT", "/drives/disk0"),
        ("PUT", "/drives/disk1"),
        ("PUT", "/network-interfaces/eth0"),
    ]
    body = {c.path: c.body for c in calls}
    assert body["/machine-config"] == {"vcpu_count": 2, "mem_size_mib": 256, "smt": False}
    boot = body["/boot-source"]
    assert boot is not None and boot["kernel_image_path"] == "/k/vmlinux"
    # the keyboard controller carries SendCtrlAltDel: it must not be disabled
    assert "i8042.nokbd" not in boot["boot_args"] and "i8042.dumbkbd" in boot["boot_args"]
    assert body["/drives/disk0"] == {
        "drive_id": "disk0",
        "path_on_host": "/img/image.ext4",
        "is_root_device": False,
        "is_read_only": True,
    }
    assert body["/drives/disk1"] is not None and body["/drives/disk1"]["is_read_only"] is False
    assert body["/network-interfaces/eth0"] == {
        "iface_id": "eth0",
        "host_dev_name": "tap0",
        "guest_mac": "02:11:22:33:44:55",
    }
    assert not any(
        c.path.startswith("/network") for c in fc.config_calls(_spec(tmp_path), Attachment())
    )


def test_config_refuses_qcow2_and_user_networking(tmp_path: Path) -> None:
    with pytest.raises(fc.FirecrackerError, match="raw disks only"):
        fc.config_calls(_spec(tmp_path, (Disk(tmp_path / "d.qcow2", "qcow2"),)), Attachment())
    with pytest.raises(fc.FirecrackerError, match="user-mode"):
        fc.config_calls(_spec(tmp_path), Attachment(user_net=True))


def test_drive_id_uses_a_valid_serial() -> None:
    assert fc.drive_id(3, "vol_1") == "vol_1"
    assert fc.drive_id(3, "ignite-vol") == "disk3"  # '-' is not allowed in Firecracker ids
    assert fc.drive_id(0, None) == "disk0"


class _FakeAPI:
    """A Firecracker-like API: records requests, answers 204, or 400 with a fault message for
    paths in ``refuse``."""

    def __init__(self, path: Path) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.refuse: set[str] = set()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                api.requests.append((self.command, self.path, json.loads(raw) if raw else None))
                if self.path in api.refuse:
                    out = json.dumps({"fault_message": "Invalid request"}).encode()
                    self.send_response(400)
                elif self.command == "GET":
                    out = json.dumps({"state": "Not started", "vmm_version": "1.12.1"}).encode()
                    self.send_response(200)
                else:
                    out = b""
                    self.send_response(204)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_PUT = do_PATCH = _answer

            def log_message(self, *args: Any) -> None:
                pass

        class Server(UnixStreamServer):
            def get_request(self) -> tuple[socket.socket, Any]:
                sock, _ = super().get_request()
                return sock, ("local", 0)  # BaseHTTPRequestHandler wants a (host, port)

        self.server = Server(str(path), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[_FakeAPI]:
    server = _FakeAPI(tmp_path / fc.API_SOCKET)
    yield server
    server.close()


def test_client_sequence_and_errors(tmp_path: Path, api: _FakeAPI) -> None:
    client = fc.wait_for_api(tmp_path / fc.API_SOCKET, 2.0)
    calls = fc.config_calls(_spec(tmp_path), Attachment(tap="tap0"))
    client.configure(calls)
    client.call(fc.INSTANCE_START)
    fc.send_ctrl_alt_del(tmp_path)
    sent = [(m, p, b) for m, p, b in api.requests if m != "GET"]
    assert sent == [(c.method, c.path, c.body) for c in calls] + [
        ("PUT", "/actions", {"action_type": "InstanceStart"}),
        ("PUT", "/actions", {"action_type": "SendCtrlAltDel"}),
    ]
    api.refuse.add("/boot-source")
    with pytest.raises(fc.FirecrackerError, match=r"boot-source.*HTTP 400.*Invalid request"):
        client.configure(calls)


def test_client_unreachable_and_wait_timeout(tmp_path: Path) -> None:
    with pytest.raises(fc.FirecrackerError, match="Firecracker API"):
        fc.FirecrackerClient(tmp_path / "none.sock", 0.5).call(fc.INSTANCE_START)
    with pytest.raises(fc.FirecrackerError, match="did not answer"):
        fc.wait_for_api(tmp_path / "none.sock", 0.05)
    with pytest.raises(fc.FirecrackerError, match="exited"):
        fc.wait_for_api(tmp_path / "none.sock", 5.0, alive=lambda: False)


def test_driver_configures_and_starts_over_the_api(tmp_path: Path, api: _FakeAPI) -> None:
    from ignitevm import proc

    sleeper = proc.start([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        driver = FirecrackerDriver(tmp_path)
        driver.wait_ready(sleeper, _spec(tmp_path), Attachment(tap="tap0"))
        assert api.requests[-1] == ("PUT", "/actions", {"action_type": "InstanceStart"})
        api.refuse.add("/machine-config")
        with pytest.raises(fc.FirecrackerError, match="machine-config"):
            driver.wait_ready(sleeper, _spec(tmp_path), Attachment())
        assert sleeper.wait(timeout=5) != 0  # a refused configuration kills the process
    finally:
        sleeper.kill()
        sleeper.wait()


def test_driver_for() -> None:
    assert isinstance(driver_for("qemu", Path("/x")), QemuDriver)
    assert isinstance(driver_for("firecracker", Path("/x")), FirecrackerDriver)


@pytest.mark.parametrize(
    ("requested", "facts", "binary", "vmm", "accel", "why"),
    [
        ("auto", GOOD, "/usr/bin/firecracker", VMMName.FIRECRACKER, Accel.KVM, "KVM works"),
        ("auto", GOOD, None, VMMName.QEMU, Accel.KVM, "no firecracker"),
        ("auto", PVM, "/usr/bin/firecracker", VMMName.QEMU, Accel.TCG, "nested PVM"),
        ("qemu", PVM, None, VMMName.QEMU, Accel.TCG, "TCG"),
        ("qemu", GOOD, None, VMMName.QEMU, Accel.KVM, "KVM works"),
        ("firecracker", PVM, None, VMMName.FIRECRACKER, Accel.KVM, "asked"),
    ],
)
def test_choose_vmm(
    requested: str, facts: KVMFacts, binary: str | None, vmm: VMMName, accel: Accel, why: str
) -> None:
    choice = choose_vmm(requested, facts, binary)
    assert (choice.vmm, choice.accel) == (vmm, accel)
    assert why in choice.reason


def test_kvm_problem_and_facts(tmp_path: Path) -> None:
    assert kvm_problem(GOOD) is None
    assert "does not exist" in (kvm_problem(KVMFacts(False, False, False, True)) or "")
    assert "readable" in (kvm_problem(KVMFacts(True, False, False, True)) or "")
    assert "no vmx/svm" in (kvm_problem(KVMFacts(True, True, False, False)) or "")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu vmx sse\n")
    facts = read_kvm_facts(tmp_path / "kvm", tmp_path / "pvm", cpuinfo)
    assert facts == KVMFacts(False, False, False, True)


def test_auto_skips_firecracker_for_a_kernel_without_mmio_cmdline() -> None:
    choice = choose_vmm("auto", GOOD, "/bin/firecracker", kernel_fits=False)
    assert (choice.vmm, choice.accel) == (VMMName.QEMU, Accel.KVM)
    assert "virtio-mmio" in choice.reason
    assert choose_vmm("auto", GOOD, "/bin/firecracker", kernel_fits=None).vmm == VMMName.FIRECRACKER
    assert choose_vmm("firecracker", GOOD, None, kernel_fits=False).vmm == VMMName.FIRECRACKER


def test_driver_pause_snapshot_and_load_over_the_api(tmp_path: Path, api: _FakeAPI) -> None:
    """Firecracker's own snapshot calls (docs/snapshots.md "Firecracker"): pause, create,
    resume; a resume loads before any configuration, with this run's taps as overrides."""
    from dataclasses import replace

    from ignitevm import proc
    from ignitevm.network.base import GuestNIC
    from ignitevm.vmm.base import Resume, SaveRequest

    driver = FirecrackerDriver(tmp_path)
    state, memory = tmp_path / "state", tmp_path / "memory"
    state.write_bytes(b"s")  # the fake API writes nothing: the files as Firecracker leaves them
    memory.write_bytes(b"m")
    driver.pause()
    driver.unpause()
    driver.save(SaveRequest(state, memory, None, False))
    sent = [(m, p, b) for m, p, b in api.requests if m != "GET"]
    assert sent == [
        ("PATCH", "/vm", {"state": "Paused"}),
        ("PATCH", "/vm", {"state": "Resumed"}),
        ("PATCH", "/vm", {"state": "Paused"}),
        ("PUT", "/snapshot/create",
         {"snapshot_type": "Full", "snapshot_path": str(state), "mem_file_path": str(memory)}),
        ("PATCH", "/vm", {"state": "Resumed"}),
    ]  # fmt: skip
    api.requests.clear()
    api.refuse.add("/snapshot/create")
    with pytest.raises(fc.FirecrackerError, match="snapshot/create"):
        driver.save(SaveRequest(state, memory, None, True))
    assert api.requests[-1][:3] == ("PATCH", "/vm", {"state": "Resumed"})  # it runs on
    with pytest.raises(IgniteError, match="cannot be frozen"):
        driver.save(SaveRequest(state, memory, tmp_path / "next", False))

    api.requests.clear()
    spec = replace(_spec(tmp_path), resume=Resume(state, memory, private=False))
    att = Attachment(tap="tap0", extra_nics=(GuestNIC("eth1", "tap1", "02:00:00:00:00:09"),))
    sleeper = proc.start([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        driver.wait_ready(sleeper, spec, att)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert [(m, p, b) for m, p, b in api.requests if m != "GET"] == [
        ("PUT", "/snapshot/load", {
            "snapshot_path": str(state),
            "mem_backend": {"backend_type": "File", "backend_path": str(memory)},
            "resume_vm": True,
            "network_overrides": [{"iface_id": "eth0", "host_dev_name": "tap0"},
                                  {"iface_id": "eth1", "host_dev_name": "tap1"}],
        }),
    ]  # fmt: skip
