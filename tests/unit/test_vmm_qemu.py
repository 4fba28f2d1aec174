"""QEMU command line, MACs, accelerator choice, the guest ip= argument, QMP client."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ignitevm.hostinfo import kvm_works
from ignitevm.network.base import Attachment, PortMapping, Protocol_
from ignitevm.vmm.base import (
    Accel,
    Disk,
    MachineSpec,
    guest_ip_arg,
    mac_for_uid,
    resolve_accel,
    with_guest_ip,
)
from ignitevm.vmm.qemuargs import build_qemu_argv, socket_arg
from ignitevm.vmm.qmp import QMPClient, QMPError


def _spec(tmp_path: Path, **kw: object) -> MachineSpec:
    values: dict[str, object] = {
        "uid": "0123456789abcdef",
        "name": "quiet-owl",
        "vm_dir": tmp_path,
        "vcpus": 2,
        "memory_mib": 512,
        "vmlinux": tmp_path / "vmlinux",
        "initrd": tmp_path / "initrd",
        "cmdline": "console=ttyS0 quiet",
        "disks": (
            Disk(tmp_path / "disk.qcow2", "qcow2"),
            Disk(tmp_path / "b,ase.ext4", "raw", True),
        ),
        "mac": "02:00:00:00:00:01",
        "accel": "auto",
    }
    values.update(kw)
    return MachineSpec(**values)  # type: ignore[arg-type]


def _opt(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_argv_tcg_machine_kernel_and_console(tmp_path: Path) -> None:
    argv = build_qemu_argv(_spec(tmp_path), Attachment(), kvm_ok=False)
    assert argv[0] == "qemu-system-x86_64"
    assert _opt(argv, "-M") == ["microvm,acpi=on,pit=off,pic=off,rtc=on"]
    assert _opt(argv, "-accel")[0].startswith("tcg")
    assert _opt(argv, "-cpu") == ["max"]
    assert _opt(argv, "-m") == ["512"] and _opt(argv, "-smp") == ["2"]
    assert _opt(argv, "-kernel") == [str(tmp_path / "vmlinux")]
    assert _opt(argv, "-initrd") == [str(tmp_path / "initrd")]
    assert _opt(argv, "-append") == ["console=ttyS0 quiet"]
    for flag in ("-nodefaults", "-no-user-config", "-nographic", "-no-reboot"):
        assert flag in argv
    assert _opt(argv, "-chardev") == [
        "stdio,id=con,signal=off",
        f"socket,id=agent,path={tmp_path}/agent.sock,server=on,wait=off",  # the guest agent
    ]
    assert "virtserialport,chardev=agent,name=org.ignitevm.agent" in _opt(argv, "-device")
    assert _opt(argv, "-serial") == ["chardev:con"]
    assert _opt(argv, "-qmp") == [f"unix:{tmp_path}/qmp.sock,server=on,wait=off"]
    assert "-netdev" not in argv


def test_argv_kvm_uses_host_cpu(tmp_path: Path) -> None:
    argv = build_qemu_argv(_spec(tmp_path), Attachment(), kvm_ok=True)
    assert _opt(argv, "-accel") == ["kvm"] and _opt(argv, "-cpu") == ["host"]
    forced = build_qemu_argv(_spec(tmp_path, accel="tcg"), Attachment(), kvm_ok=True)
    assert _opt(forced, "-accel")[0].startswith("tcg")


def test_argv_disks_readonly_and_comma_escaped(tmp_path: Path) -> None:
    argv = build_qemu_argv(_spec(tmp_path), Attachment(), kvm_ok=False)
    drives = _opt(argv, "-drive")
    assert drives[0].startswith(f"if=none,id=disk0,file={tmp_path}/disk.qcow2,format=qcow2,")
    assert "readonly=off" in drives[0] and "discard=unmap" in drives[0]
    assert f"file={tmp_path}/b,,ase.ext4,format=raw,readonly=on" in drives[1]
    assert "discard" not in drives[1]
    assert _opt(argv, "-device")[:2] == [
        "virtio-blk-device,drive=disk0",
        "virtio-blk-device,drive=disk1",
    ]


def test_argv_tap_nic(tmp_path: Path) -> None:
    argv = build_qemu_argv(_spec(tmp_path), Attachment(netns="ns1", tap="tap0"), kvm_ok=False)
    assert _opt(argv, "-netdev") == ["tap,id=n0,ifname=tap0,script=no,downscript=no"]
    assert "virtio-net-device,netdev=n0,mac=02:00:00:00:00:01" in _opt(argv, "-device")


def test_argv_user_net_port_forwards(tmp_path: Path) -> None:
    ports = (
        PortMapping(2222, 22),
        PortMapping(5353, 53, Protocol_.UDP, "127.0.0.1"),
    )
    argv = build_qemu_argv(_spec(tmp_path), Attachment(user_net=True, ports=ports), kvm_ok=False)
    assert _opt(argv, "-netdev") == [
        "user,id=n0,hostfwd=tcp:0.0.0.0:2222-:22,hostfwd=udp:127.0.0.1:5353-:53"
    ]


def test_long_socket_path_is_relative(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    assert socket_arg(deep, "qmp.sock") == "qmp.sock"
    assert socket_arg(tmp_path, "qmp.sock") == f"{tmp_path}/qmp.sock"


def test_mac_for_uid_is_stable_local_unicast() -> None:
    mac = mac_for_uid("0123456789abcdef")
    assert mac == mac_for_uid("0123456789abcdef") != mac_for_uid("fedcba9876543210")
    octets = mac.split(":")
    assert len(octets) == 6 and octets[0] == "02"


def test_guest_ip_arg() -> None:
    att = Attachment(ip="10.61.0.5", prefix_len=16, gateway="10.61.0.1", dns=("1.1.1.1", "9.9.9.9"))
    assert (
        guest_ip_arg(att, "web")
        == "ip=10.61.0.5::10.61.0.1:255.255.0.0:web:eth0:off:1.1.1.1:9.9.9.9"
    )
    assert guest_ip_arg(Attachment(), "web") is None
    assert with_guest_ip("console=ttyS0", att, "web").startswith("console=ttyS0 ip=10.61.0.5::")
    # a user-given ip= wins
    assert with_guest_ip("ip=dhcp", att, "web") == "ip=dhcp"


def test_kvm_detection(tmp_path: Path) -> None:
    kvm = tmp_path / "kvm"
    kvm.write_text("")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags : fpu vmx sse\n")
    missing = tmp_path / "no-pvm"
    assert kvm_works(kvm, missing, cpuinfo)
    pvm = tmp_path / "kvm_pvm"
    pvm.mkdir()
    assert not kvm_works(kvm, pvm, cpuinfo)  # nested PVM hangs guests
    cpuinfo.write_text("flags : fpu sse\n")
    assert not kvm_works(kvm, missing, cpuinfo)
    assert not kvm_works(tmp_path / "absent", missing, cpuinfo)
    assert resolve_accel("auto", kvm_ok=False) == Accel.TCG
    assert resolve_accel("auto", kvm_ok=True) == Accel.KVM
    assert resolve_accel("kvm", kvm_ok=False) == Accel.KVM


class FakeQMP:
    """A QMP server on a unix socket that answers like QEMU, with an event in between."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.received: list[dict[str, object]] = []
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen(1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn, conn.makefile("rwb") as f:
            f.write(b'{"QMP": {"version": {}, "capabilities": []}}\r\n')
            f.flush()
            for line in f:
                msg = json.loads(line)
                self.received.append(msg)
                if msg["execute"] == "bad":
                    f.write(b'{"error": {"class": "CommandNotFound", "desc": "no bad"}}\r\n')
                elif msg["execute"] == "silent":
                    pass
                else:
                    f.write(b'{"event": "POWERDOWN", "timestamp": {}}\r\n')
                    f.write(json.dumps({"return": {"ran": msg["execute"]}}).encode() + b"\r\n")
                f.flush()


@pytest.fixture
def fake_qmp(tmp_path: Path) -> Iterator[FakeQMP]:
    server = FakeQMP(tmp_path / "qmp.sock")
    yield server
    server.server.close()


def test_qmp_client_negotiates_and_executes(fake_qmp: FakeQMP) -> None:
    with QMPClient(fake_qmp.path, timeout=2) as qmp:
        assert qmp.execute("system_powerdown") == {"ran": "system_powerdown"}
        with pytest.raises(QMPError, match="no bad"):
            qmp.execute("bad")
        qmp.timeout = 0.2
        with pytest.raises(QMPError, match="did not answer"):
            qmp.execute("silent")
    assert [m["execute"] for m in fake_qmp.received] == [
        "qmp_capabilities",
        "system_powerdown",
        "bad",
        "silent",
    ]


def test_qmp_client_unreachable(tmp_path: Path) -> None:
    with pytest.raises(QMPError, match="cannot connect"):
        QMPClient(tmp_path / "absent.sock", timeout=0.5).connect()


def test_qmp_client_long_socket_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 90)
    deep.mkdir()
    cwd = os.getcwd()
    os.chdir(deep)  # bind relative: the absolute path is too long for sun_path
    try:
        server = FakeQMP(Path("qmp.sock"))
    finally:
        os.chdir(cwd)
    try:
        with QMPClient(deep / "qmp.sock", timeout=2) as qmp:
            assert qmp.execute("query-status") == {"ran": "query-status"}
    finally:
        server.server.close()


def test_argv_with_inherited_fds_and_guest_memory(tmp_path: Path) -> None:
    from ignitevm.vmm.qemuargs import GuestMemory

    spec = _spec(tmp_path, memory_mib=256)
    memory = GuestMemory(8, shared=True)
    argv = build_qemu_argv(spec, Attachment(tap="tap0"), kvm_ok=False, qmp_fd=5, tap_fds=(6,),
                           agent_fd=7, memory=memory, sandbox=True)  # fmt: skip
    assert _opt(argv, "-M")[0].endswith(",memory-backend=mem")
    assert _opt(argv, "-object") == [
        "memory-backend-file,id=mem,size=256M,mem-path=/proc/self/fd/8,share=on"]  # fmt: skip
    assert _opt(argv, "-netdev") == ["tap,id=n0,fd=6"]
    assert "socket,id=qmp,fd=5,server=on,wait=off" in _opt(argv, "-chardev")
    assert "socket,id=agent,fd=7" in _opt(argv, "-chardev")
    assert "-qmp" not in argv and "-incoming" not in argv
    assert _opt(argv, "-sandbox") == [
        "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"]  # fmt: skip
    resumed = build_qemu_argv(spec, Attachment(), kvm_ok=False,
                              memory=GuestMemory(8, shared=False, incoming=True))  # fmt: skip
    assert _opt(resumed, "-incoming") == ["defer"] and "share=off" in _opt(resumed, "-object")[0]


def test_disks_as_fd_sets_with_the_base_named_by_the_host(tmp_path: Path) -> None:
    from ignitevm.vmm.qemuargs import DiskFds

    top, base = tmp_path / "disk.qcow2", tmp_path / "image.ext4"
    top.write_bytes(b"q"), base.write_bytes(b"b")
    disks = (Disk(top, "qcow2", backing=(base,)), Disk(base, "raw", readonly=True))
    fds = DiskFds(disks)
    try:
        argv = build_qemu_argv(_spec(tmp_path, disks=disks), Attachment(), kvm_ok=False,
                               disk_fds=fds)  # fmt: skip
        assert len(fds.fds) == 4  # top: O_RDWR + O_RDONLY, its base, the read-only disk
        sets = [a for a in _opt(argv, "-add-fd")]
        assert [s.split(",")[1] for s in sets] == ["set=1", "set=1", "set=2", "set=3"]
        first, second = _opt(argv, "-drive")
        assert "file=/dev/fdset/1" in first and "backing.file.filename=/dev/fdset/2" in first
        assert "file.locking=off" in first and "format=qcow2" in first
        assert "file=/dev/fdset/3" in second and "readonly=on" in second
        assert str(tmp_path) not in " ".join(_opt(argv, "-drive"))  # QEMU opens no path
    finally:
        fds.close()


def test_argv_extra_nics_use_their_inherited_taps(tmp_path: Path) -> None:
    """Every tap, eth0's and the annotated interfaces', is an fd the supervisor opened in the
    VM's netns: a jailed QEMU has no /dev/net/tun to open them by name."""
    from ignitevm.network.base import GuestNIC

    att = Attachment(tap="tap0", extra_nics=(GuestNIC("eth1", "tap1", "02:00:00:00:00:01"),))
    spec = _spec(tmp_path)
    argv = build_qemu_argv(spec, att, kvm_ok=False, tap_fds=(6, 9))
    assert _opt(argv, "-netdev") == ["tap,id=n0,fd=6", "tap,id=n1,fd=9"]
    assert "virtio-net-device,netdev=n1,mac=02:00:00:00:00:01" in _opt(argv, "-device")
    argv = build_qemu_argv(spec, att, kvm_ok=False)  # not inherited: opened by name
    assert _opt(argv, "-netdev")[1] == "tap,id=n1,ifname=tap1,script=no,downscript=no"


def test_argv_shares_are_9p_devices_readonly_in_qemu(tmp_path: Path) -> None:
    from ignitevm.vmm.base import HostShare

    shares = (HostShare(tmp_path / "s,rc", "ignite_share0"), HostShare(Path("/data"), "t1", True))
    argv = build_qemu_argv(_spec(tmp_path, shares=shares), Attachment(), kvm_ok=False)
    assert _opt(argv, "-fsdev") == [
        f"local,id=share0,path={tmp_path}/s,,rc,security_model=mapped-xattr,multidevs=remap",
        "local,id=share1,path=/data,security_model=mapped-xattr,multidevs=remap,readonly=on",
    ]
    devices = [d for d in _opt(argv, "-device") if d.startswith("virtio-9p-device")]
    assert devices == [
        "virtio-9p-device,fsdev=share0,mount_tag=ignite_share0",
        "virtio-9p-device,fsdev=share1,mount_tag=t1",
    ]
    assert "-fsdev" not in build_qemu_argv(_spec(tmp_path), Attachment(), kvm_ok=False)
