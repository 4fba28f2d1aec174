"""The QEMU provider: the ``qemu-system-x86_64 -M microvm`` command line for a MachineSpec, and
its driver (docs/runtime.md)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from ignitevm import proc
from ignitevm.errors import IgniteError
from ignitevm.layout import VMFiles
from ignitevm.network.base import Attachment, Protocol_
from ignitevm.vmm.base import Accel, MachineSpec, resolve_accel

if TYPE_CHECKING:
    from subprocess import Popen

QEMU_BINARY = "qemu-system-x86_64"
QMP_SOCKET = VMFiles.QMP_SOCKET
QMP_WAIT = 10.0  # QEMU creates its QMP socket right after parsing its command line
# sockaddr_un.sun_path holds 108 bytes; longer socket paths are used relative to vm_dir,
# where the supervisor starts QEMU.
_MAX_SOCKET_PATH = 100
# ACPI declares microvm's virtio-mmio devices and gives the guest a power button (graceful
# stop); the legacy PIT/PIC are not needed with the LAPIC timer and cost boot time under TCG.
MACHINE = "microvm,acpi=on,pit=off,pic=off,rtc=on"
# A smaller translation cache than TCG's 1 GiB default cuts QEMU's RSS by ~45 MB
# (docs/runtime.md, measured) at no measurable boot cost for a small guest.
TCG_TB_SIZE_MIB = 32


def socket_arg(vm_dir: Path, name: str) -> str:
    """The path QEMU binds ``name`` at: absolute, or relative to vm_dir when too long."""
    path = str(vm_dir / name)
    return path if len(path) <= _MAX_SOCKET_PATH else name


def _accel_args(accel: Accel) -> list[str]:
    if accel == Accel.KVM:
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", f"tcg,tb-size={TCG_TB_SIZE_MIB}", "-cpu", "max"]


def _disk_args(spec: MachineSpec) -> list[str]:
    args: list[str] = []
    for i, disk in enumerate(spec.disks):
        opts = [
            "if=none",
            f"id=disk{i}",
            f"file={_escape(str(disk.path))}",
            f"format={disk.format}",
            f"readonly={'on' if disk.readonly else 'off'}",
            "cache=writeback",
        ]
        if not disk.readonly:
            opts.append("discard=unmap")
        device = f"virtio-blk-device,drive=disk{i}"
        if disk.serial:
            device += f",serial={_escape(disk.serial)}"
        args += ["-drive", ",".join(opts), "-device", device]
    return args


def _share_args(spec: MachineSpec) -> list[str]:
    """``--share``: one virtio-9p device per host directory (docs/runtime.md "Host
    directories"). security_model=mapped-xattr: the guest's owners, modes, devices and
    symlinks are xattrs on files QEMU's user owns, never real ones on the host (no set-id file,
    device node or symlink planted by a guest); QEMU's local backend resolves every path below
    the export root without following symlinks out of it. readonly=on makes QEMU refuse
    writes, whatever the guest mounts. multidevs=remap keeps inode numbers unique when the
    directory spans several host filesystems."""
    args: list[str] = []
    for i, share in enumerate(spec.shares):
        fsdev = (
            f"local,id=share{i},path={_escape(str(share.path))},security_model=mapped-xattr,"
            f"multidevs=remap{',readonly=on' if share.readonly else ''}"
        )
        device = f"virtio-9p-device,fsdev=share{i},mount_tag={_escape(share.tag)}"
        args += ["-fsdev", fsdev, "-device", device]
    return args


def _hostfwd(att: Attachment) -> str:
    rules = []
    for pm in att.ports:
        proto = "udp" if pm.protocol == Protocol_.UDP else "tcp"
        rules.append(f",hostfwd={proto}:{pm.host_ip}:{pm.host_port}-:{pm.vm_port}")
    return "".join(rules)


def _nic_args(spec: MachineSpec, att: Attachment) -> list[str]:
    if att.tap is not None:
        netdev = f"tap,id=n0,ifname={att.tap},script=no,downscript=no"
    elif att.user_net:
        netdev = "user,id=n0" + _hostfwd(att)
    else:
        return []
    return ["-netdev", netdev, "-device", f"virtio-net-device,netdev=n0,mac={spec.mac}"]


def _escape(value: str) -> str:
    """QEMU option values escape a comma by doubling it."""
    return value.replace(",", ",,")


def build_qemu_argv(spec: MachineSpec, att: Attachment, *, kvm_ok: bool | None = None) -> list[str]:
    """The full QEMU command line. The serial console is QEMU's stdio (the supervisor's pipes),
    QMP listens on ``vm_dir/qmp.sock``. ``kvm_ok`` overrides host detection (tests)."""
    accel = resolve_accel(spec.accel, kvm_ok=kvm_ok)
    return [
        QEMU_BINARY,
        "-M", MACHINE,
        *_accel_args(accel),
        "-m", str(spec.memory_mib),
        "-smp", str(spec.vcpus),
        "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
        "-kernel", str(spec.vmlinux),
        "-initrd", str(spec.initrd),
        "-append", spec.cmdline,
        *_disk_args(spec),
        *_nic_args(spec, att),
        *_share_args(spec),
        "-chardev", "stdio,id=con,signal=off",
        "-serial", "chardev:con",
        "-qmp", f"unix:{_escape(socket_arg(spec.vm_dir, QMP_SOCKET))},server=on,wait=off",
    ]  # fmt: skip


class QemuDriver:
    """QEMU: started with its whole configuration; QMP for the power button and ``quit``."""

    name = "QEMU"
    hard_stop_grace = 3.0
    runtime_files = (QMP_SOCKET,)

    def __init__(self, vm_dir: Path) -> None:
        self.vm_dir = vm_dir

    def argv(self, spec: MachineSpec, att: Attachment) -> list[str]:
        argv = build_qemu_argv(spec, att)
        argv[0] = proc.require_tool(argv[0])
        return argv

    def wait_ready(self, vmm: Popen[bytes], spec: MachineSpec, att: Attachment) -> None:
        """A QEMU that rejects its command line or cannot load the kernel exits at once: report
        that as a start failure rather than as a VM that stopped. QMP answers only once the
        machine is set up and its main loop runs."""
        from ignitevm.vmm.qmp import QMPClient, QMPError

        deadline = time.monotonic() + QMP_WAIT
        qmp = self.vm_dir / QMP_SOCKET
        while True:
            code = vmm.poll()
            if code is not None:
                raise IgniteError(
                    f"QEMU exited with code {code} before the VM started",
                    hint=f"see QEMU's messages in {self.vm_dir / VMFiles.SUPERVISOR_LOG}",
                )
            if time.monotonic() > deadline:
                raise IgniteError(f"QEMU did not answer on QMP in {QMP_WAIT:g} s")
            if qmp.exists():
                try:
                    with QMPClient(qmp, timeout=max(0.1, deadline - time.monotonic())) as c:
                        c.execute("query-status")
                    return
                except QMPError:
                    pass  # it exited while we connected: reported above
            time.sleep(0.005)

    def qmp(
        self, command: str, timeout: float, arguments: dict[str, object] | None = None
    ) -> object:
        from ignitevm.vmm.qmp import QMPClient

        with QMPClient(self.vm_dir / QMP_SOCKET, timeout=timeout) as client:
            return client.execute(command, arguments)

    def powerdown(self) -> None:
        self.qmp("system_powerdown", 2.0)

    def hard_stop(self, pid: int) -> None:
        self.qmp("quit", 1.0)
