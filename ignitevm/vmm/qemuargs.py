"""QEMU's command line for a MachineSpec: ``qemu-system-x86_64 -M microvm`` with its disks, NIC,
QMP socket, guest agent port and guest RAM (docs/runtime.md "QEMU command line")."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ignitevm.layout import VMFiles
from ignitevm.network.base import Attachment, Protocol_
from ignitevm.vmm.base import Accel, Disk, MachineSpec, resolve_accel

QEMU_BINARY = "qemu-system-x86_64"
QMP_SOCKET = VMFiles.QMP_SOCKET
AGENT_PORT = "org.ignitevm.agent"
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
        files = fdsets.files[i] if fdsets else [str(p) for p in (disk.path, *disk.backing)]
        opts = [
            "if=none",
            f"id=disk{i}",
            f"file={_escape(files[0])}",
            f"format={disk.format}",
            f"readonly={'on' if disk.readonly else 'off'}",
            "cache=writeback",
        ]
        opts += _chain_opts(files[1:], locking=fdsets is None)
        if not disk.readonly:
            opts.append("discard=unmap")
        device = f"virtio-blk-device,drive=disk{i}"
        if disk.serial:
            device += f",serial={_escape(disk.serial)}"
        args += ["-drive", ",".join(opts), "-device", device]
    return args


def _chain_opts(layers: list[str], *, locking: bool) -> list[str]:
    """``backing.`` options naming every layer under a qcow2 disk: qcow2 layers, the raw base
    last. Image locks are per open file: QEMU re-takes them after a migration (a snapshot) on
    fds it did not open itself and fails, so they are off with fd sets; one supervisor per VM
    holds the VM's lock, which is what guards its disks against a second writer."""
    opts = [] if locking else ["file.locking=off"]
    prefix = ""
    for n, layer in enumerate(layers):
        prefix += "backing."
        driver = "raw" if n == len(layers) - 1 else "qcow2"
        opts.append(f"{prefix}driver={driver},{prefix}file.filename={_escape(layer)}")
        if not locking:
            opts.append(f"{prefix}file.locking=off")
    return opts


class DiskFds:
    """The VM's disks opened by the supervisor, as QEMU fd sets (``-add-fd``): a writable
    disk with an O_RDWR and an O_RDONLY fd (QEMU picks by access mode), a read-only disk and a
    qcow2's layers with an O_RDONLY fd each. ``files[i]``: the /dev/fdset paths of disk i
    and of its layers, top down."""

    def __init__(self, disks: tuple[Disk, ...]) -> None:
        self.sets: list[list[int]] = []
        self.files: list[list[str]] = []
        try:
            for disk in disks:
                top = self._add(disk.path, writable=not disk.readonly)
                under = [self._add(p, writable=False) for p in disk.backing]
                self.files.append([top, *under])
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


def _nic_args(spec: MachineSpec, att: Attachment, tap_fds: tuple[int, ...]) -> list[str]:
    """eth0, then the annotated interfaces (docs/network.md): each tap inherited as one of
    ``tap_fds`` (in this order), else opened by QEMU by name."""

    def tap(i: int, name: str) -> str:
        if i < len(tap_fds):
            return f"tap,id=n{i},fd={tap_fds[i]}"
        return f"tap,id=n{i},ifname={name},script=no,downscript=no"

    if att.tap is not None:
        netdev = tap(0, att.tap)
    elif att.user_net:
        netdev = "user,id=n0" + _hostfwd(att)
    else:
        return []
    args = ["-netdev", netdev, "-device", f"virtio-net-device,netdev=n0,mac={spec.mac}"]
    for i, nic in enumerate(att.extra_nics, start=1):
        args += ["-netdev", tap(i, nic.tap),
                 "-device", f"virtio-net-device,netdev=n{i},mac={nic.mac}"]  # fmt: skip
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


def _escape(value: str) -> str:
    """QEMU option values escape a comma by doubling it."""
    return value.replace(",", ",,")


def build_qemu_argv(
    spec: MachineSpec,
    att: Attachment,
    *,
    kvm_ok: bool | None = None,
    qmp_fd: int | None = None,
    tap_fds: tuple[int, ...] = (),
    disk_fds: DiskFds | None = None,
    agent_fd: int | None = None,
    memory: GuestMemory | None = None,
    sandbox: bool = False,
) -> list[str]:
    """The full QEMU command line. The serial console is QEMU's stdio (the supervisor's pipes).
    QMP listens on an inherited socket ``qmp_fd`` (else binds ``vm_dir/qmp.sock`` itself), the
    NICs are the inherited taps ``tap_fds`` (else QEMU opens them by name), the disks are the
    fd sets ``disk_fds`` (else QEMU opens their paths), the guest agent's port listens on
    ``agent_fd`` (else on ``vm_dir/agent.sock``), the guest's RAM is ``memory`` (a memfd: what
    snapshots save and restores map; else QEMU's own anonymous memory), ``sandbox`` adds QEMU's
    seccomp filter with everything denied. ``kvm_ok`` overrides host detection (tests)."""
    accel = resolve_accel(spec.accel, kvm_ok=kvm_ok)
    return [
        QEMU_BINARY,
        "-name", f"ignite-{spec.uid},process=ignite-{spec.uid}",  # pid_in_dir finds it by uid
        "-M", MACHINE + (",memory-backend=mem" if memory else ""),
        *_accel_args(accel),
        "-m", str(spec.memory_mib),
        "-smp", str(spec.vcpus),
        "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
        "-kernel", str(spec.vmlinux),
        "-initrd", str(spec.initrd),
        "-append", spec.cmdline,
        *_disk_args(spec, disk_fds),
        *_nic_args(spec, att, tap_fds),
        *_share_args(spec),
        "-chardev", "stdio,id=con,signal=off",
        "-serial", "chardev:con",
        *_qmp_args(spec, qmp_fd),
        *_agent_args(spec, agent_fd),
        *(memory.args(spec.memory_mib) if memory else ()),
        *(SANDBOX if sandbox else ()),
    ]  # fmt: skip


def _agent_args(spec: MachineSpec, agent_fd: int | None) -> list[str]:
    """The guest agent's virtio-serial port (docs/internals.md "The guest agent"): one end of
    a socket pair whose other end the supervisor keeps for the VM's life (a port whose host
    side is not connected reads as end of file in the guest); else a socket QEMU listens on."""
    if agent_fd is not None:
        chardev = f"socket,id=agent,fd={agent_fd}"
    else:
        path = _escape(socket_arg(spec.vm_dir, VMFiles.AGENT_SOCKET))
        chardev = f"socket,id=agent,path={path},server=on,wait=off"
    return [
        "-device", "virtio-serial-device",
        "-chardev", chardev,
        "-device", f"virtserialport,chardev=agent,name={AGENT_PORT}",
    ]  # fmt: skip


@dataclass(frozen=True)
class GuestMemory:
    """The guest's RAM as an inherited memfd: shared (a running VM: a snapshot reads its pages
    from the supervisor's fd) or private (a restore: the snapshot's sealed pages, copied on
    write; every VM restored from one memfd shares the pages it has not written)."""

    fd: int
    shared: bool
    incoming: bool = False  # resumed from a saved state (-incoming defer), not booted

    def args(self, memory_mib: int) -> list[str]:
        share = "on" if self.shared else "off"
        obj = (f"memory-backend-file,id=mem,size={memory_mib}M,"
               f"mem-path=/proc/self/fd/{self.fd},share={share}")  # fmt: skip
        return ["-object", obj, *(["-incoming", "defer"] if self.incoming else [])]


def _qmp_args(spec: MachineSpec, qmp_fd: int | None) -> list[str]:
    if qmp_fd is None:
        return ["-qmp", f"unix:{_escape(socket_arg(spec.vm_dir, QMP_SOCKET))},server=on,wait=off"]
    return ["-chardev", f"socket,id=qmp,fd={qmp_fd},server=on,wait=off",
            "-mon", "chardev=qmp,mode=control"]  # fmt: skip
