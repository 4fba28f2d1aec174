"""The QEMU provider: the ``qemu-system-x86_64 -M microvm`` command line for a MachineSpec, and
its driver (docs/runtime.md)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ignitevm import proc
from ignitevm.errors import IgniteError
from ignitevm.layout import VMFiles
from ignitevm.network.base import Attachment, Protocol_
from ignitevm.vmm.base import Accel, Disk, MachineSpec, resolve_accel

if TYPE_CHECKING:
    from subprocess import Popen

    from ignitevm.vmm.confine import Jail

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
# QEMU's seccomp filter: no obsolete calls, no set*id, no fork/exec, no scheduler or
# resource changes (docs/runtime.md "The jail")
SANDBOX = ("-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny")


def socket_arg(vm_dir: Path, name: str) -> str:
    """The path QEMU binds ``name`` at: absolute, or relative to vm_dir when too long."""
    path = str(vm_dir / name)
    return path if len(path) <= _MAX_SOCKET_PATH else name


def _accel_args(accel: Accel) -> list[str]:
    if accel == Accel.KVM:
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", f"tcg,tb-size={TCG_TB_SIZE_MIB}", "-cpu", "max"]


def _disk_args(spec: MachineSpec, fdsets: DiskFds | None) -> list[str]:
    """One virtio-blk device per disk: the file by path, or (``fdsets``) the fd set holding
    the files the supervisor opened, so QEMU opens no disk itself."""
    args: list[str] = fdsets.add_fd_args() if fdsets else []
    for i, disk in enumerate(spec.disks):
        base = str(disk.backing) if disk.backing else None
        where = fdsets.files[i] if fdsets else (str(disk.path), base)
        opts = [
            "if=none",
            f"id=disk{i}",
            f"file={_escape(where[0])}",
            f"format={disk.format}",
            f"readonly={'on' if disk.readonly else 'off'}",
            "cache=writeback",
        ]
        if where[1] is not None:
            opts.append(f"backing.driver=raw,backing.file.filename={_escape(where[1])}")
        if not disk.readonly:
            opts.append("discard=unmap")
        device = f"virtio-blk-device,drive=disk{i}"
        if disk.serial:
            device += f",serial={_escape(disk.serial)}"
        args += ["-drive", ",".join(opts), "-device", device]
    return args


class DiskFds:
    """The VM's disks opened by the supervisor, as QEMU fd sets (``-add-fd``): a writable
    disk with an O_RDWR and an O_RDONLY fd (QEMU picks by access mode), a read-only disk and a
    qcow2's base with an O_RDONLY fd. ``files[i]`` = (/dev/fdset path, its base's or None)."""

    def __init__(self, disks: tuple[Disk, ...]) -> None:
        self.sets: list[list[int]] = []
        self.files: list[tuple[str, str | None]] = []
        try:
            for disk in disks:
                top = self._add(disk.path, writable=not disk.readonly)
                base = self._add(disk.backing, writable=False) if disk.backing else None
                self.files.append((top, base))
        except BaseException:
            self.close()
            raise

    def _add(self, path: Path, *, writable: bool) -> str:
        modes = (os.O_RDWR, os.O_RDONLY) if writable else (os.O_RDONLY,)
        fds: list[int] = []
        self.sets.append(fds)
        for mode in modes:
            fds.append(os.open(path, mode | os.O_CLOEXEC))
        return f"/dev/fdset/{len(self.sets)}"

    @property
    def fds(self) -> tuple[int, ...]:
        return tuple(fd for fds in self.sets for fd in fds)

    def add_fd_args(self) -> list[str]:
        return [a for n, fds in enumerate(self.sets, 1) for fd in fds
                for a in ("-add-fd", f"fd={fd},set={n}")]  # fmt: skip

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.sets.clear()


def _hostfwd(att: Attachment) -> str:
    rules = []
    for pm in att.ports:
        proto = "udp" if pm.protocol == Protocol_.UDP else "tcp"
        rules.append(f",hostfwd={proto}:{pm.host_ip}:{pm.host_port}-:{pm.vm_port}")
    return "".join(rules)


def _nic_args(spec: MachineSpec, att: Attachment, tap_fd: int | None) -> list[str]:
    if tap_fd is not None:
        netdev = f"tap,id=n0,fd={tap_fd}"
    elif att.tap is not None:
        netdev = f"tap,id=n0,ifname={att.tap},script=no,downscript=no"
    elif att.user_net:
        netdev = "user,id=n0" + _hostfwd(att)
    else:
        return []
    return ["-netdev", netdev, "-device", f"virtio-net-device,netdev=n0,mac={spec.mac}"]


def _escape(value: str) -> str:
    """QEMU option values escape a comma by doubling it."""
    return value.replace(",", ",,")


def build_qemu_argv(
    spec: MachineSpec,
    att: Attachment,
    *,
    kvm_ok: bool | None = None,
    qmp_fd: int | None = None,
    tap_fd: int | None = None,
    disk_fds: DiskFds | None = None,
    sandbox: bool = False,
) -> list[str]:
    """The full QEMU command line. The serial console is QEMU's stdio (the supervisor's pipes).
    QMP listens on an inherited socket ``qmp_fd`` (else binds ``vm_dir/qmp.sock`` itself), the
    NIC is the inherited tap ``tap_fd`` (else QEMU opens ``att.tap``), the disks are the fd sets
    ``disk_fds`` (else QEMU opens their paths), ``sandbox`` adds QEMU's
    seccomp filter with everything denied. ``kvm_ok`` overrides host detection (tests)."""
    accel = resolve_accel(spec.accel, kvm_ok=kvm_ok)
    return [
        QEMU_BINARY,
        "-name", f"ignite-{spec.uid},process=ignite-{spec.uid}",  # pid_in_dir finds it by uid
        "-M", MACHINE,
        *_accel_args(accel),
        "-m", str(spec.memory_mib),
        "-smp", str(spec.vcpus),
        "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
        "-kernel", str(spec.vmlinux),
        "-initrd", str(spec.initrd),
        "-append", spec.cmdline,
        *_disk_args(spec, disk_fds),
        *_nic_args(spec, att, tap_fd),
        "-chardev", "stdio,id=con,signal=off",
        "-serial", "chardev:con",
        *_qmp_args(spec, qmp_fd),
        *(SANDBOX if sandbox else ()),
    ]  # fmt: skip


def _qmp_args(spec: MachineSpec, qmp_fd: int | None) -> list[str]:
    if qmp_fd is None:
        return ["-qmp", f"unix:{_escape(socket_arg(spec.vm_dir, QMP_SOCKET))},server=on,wait=off"]
    return ["-chardev", f"socket,id=qmp,fd={qmp_fd},server=on,wait=off",
            "-mon", "chardev=qmp,mode=control"]  # fmt: skip


class QemuDriver:
    """QEMU: started with its whole configuration; QMP for the power button and ``quit``."""

    name = "QEMU"
    hard_stop_grace = 3.0
    runtime_files = (QMP_SOCKET,)

    def __init__(self, vm_dir: Path) -> None:
        self.vm_dir = vm_dir

    def argv(
        self, spec: MachineSpec, att: Attachment, *, qmp_fd: int, tap_fd: int | None,
        disk_fds: DiskFds,
    ) -> list[str]:  # fmt: skip
        argv = build_qemu_argv(spec, att, qmp_fd=qmp_fd, tap_fd=tap_fd, disk_fds=disk_fds,
                               sandbox=True)  # fmt: skip
        argv[0] = proc.require_tool(argv[0])
        return argv

    def start(self, spec: MachineSpec, att: Attachment, jail: Jail | None) -> Popen[bytes]:
        """QEMU gets its QMP socket, its tap and its disks as inherited fds (it opens none of
        them itself: a jailed QEMU sees neither /dev/net/tun nor the state directory), runs in
        a network namespace of its own unless it does user-mode networking (whose forwards
        bind on the host), and under QEMU's seccomp sandbox."""
        from ignitevm.network.tap import open_tap
        from ignitevm.vmm.jail import die_with_parent, preexec
        from ignitevm.vmm.qmp import listen_unix

        fds: list[int] = []
        disks = DiskFds(spec.disks)
        try:
            qmp = listen_unix(self.vm_dir / QMP_SOCKET)
            fds.append(qmp.detach())
            tap_fd = open_tap(att.netns, att.tap) if att.tap else None
            if tap_fd is not None:
                fds.append(tap_fd)
            argv = self.argv(spec, att, qmp_fd=fds[0], tap_fd=tap_fd, disk_fds=disks)
            if jail is None:
                run_first = die_with_parent()
            else:
                from ignitevm.vmm.confine import jail_spec

                accel = resolve_accel(spec.accel)
                js = jail_spec(jail, spec, new_netns=not att.user_net, kvm=accel == Accel.KVM)
                run_first = preexec(js)
            return proc.start(argv, stdin=proc.PIPE, stdout=proc.PIPE, cwd=self.vm_dir,
                              close_fds=True, pass_fds=(*fds, *disks.fds),
                              preexec_fn=run_first)  # fmt: skip
        finally:
            disks.close()  # QEMU holds its copies
            for fd in fds:
                os.close(fd)

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

    @staticmethod
    def remove_run_files(vm_dir: Path) -> None:
        (vm_dir / QMP_SOCKET).unlink(missing_ok=True)
