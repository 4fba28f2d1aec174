"""What a VMM provider is asked to run: one machine, its disks, kernel and NIC."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from ignitevm.network.base import Attachment


class VMMName(StrEnum):
    QEMU = "qemu"
    FIRECRACKER = "firecracker"


class Accel(StrEnum):
    AUTO = "auto"
    KVM = "kvm"
    TCG = "tcg"


@dataclass(frozen=True)
class Disk:
    path: Path
    format: str  # "raw" | "qcow2"
    readonly: bool = False
    serial: str | None = None  # the guest reads it in /sys/block/vdX/serial (volumes)


@dataclass(frozen=True)
class HostShare:
    """A host directory the guest mounts with 9p (``--share``; docs/internals.md)."""

    path: Path
    tag: str  # the guest mounts it by this mount_tag
    readonly: bool = False  # enforced by QEMU (the fsdev's readonly=on), not only the guest


@dataclass(frozen=True)
class MachineSpec:
    uid: str
    name: str
    vm_dir: Path
    vcpus: int
    memory_mib: int
    vmlinux: Path
    initrd: Path
    cmdline: str
    disks: tuple[Disk, ...]
    mac: str
    accel: str = Accel.AUTO
    shares: tuple[HostShare, ...] = ()


def mac_for_uid(uid: str) -> str:
    """A stable, locally administered unicast MAC derived from the VM uid.

    The first octet 0x02 marks it locally administered, so it never collides with a vendor's."""
    import hashlib  # here: the supervisor never needs it, and it is slow to import

    digest = hashlib.sha256(uid.encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


def resolve_accel(accel: str, *, kvm_ok: bool | None = None) -> Accel:
    """``auto`` becomes ``kvm`` when hardware virtualization works, else ``tcg``."""
    chosen = Accel(accel)
    if chosen != Accel.AUTO:
        return chosen
    from ignitevm.hostinfo import kvm_works

    ok = kvm_works() if kvm_ok is None else kvm_ok
    return Accel.KVM if ok else Accel.TCG


def guest_ip_arg(att: Attachment, hostname: str) -> str | None:
    """``ip=<ip>::<gw>:<mask>:<hostname>:eth0:off[:<dns0>[:<dns1>]]`` for /init, or None."""
    if att.ip is None:
        return None
    prefix = att.prefix_len if att.prefix_len is not None else 24
    mask = str(ipaddress.IPv4Network(f"0.0.0.0/{prefix}").netmask)
    fields = [att.ip, "", att.gateway or "", mask, hostname, "eth0", "off", *att.dns[:2]]
    return "ip=" + ":".join(fields)


def with_guest_ip(cmdline: str, att: Attachment, hostname: str) -> str:
    """The command line with the attachment's ``ip=`` appended (an existing ``ip=`` wins)."""
    arg = guest_ip_arg(att, hostname)
    if arg is None or any(word.startswith("ip=") for word in cmdline.split()):
        return cmdline
    return f"{cmdline} {arg}".strip()
