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
    # qcow2: the layers under it, top down: qcow2 layers (snapshots), the raw image base last;
    # named to QEMU explicitly, so no image header (which a compromised VMM could rewrite)
    # ever chooses a file the host opens
    backing: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Resume:
    """Resume a machine from a saved state instead of booting it (docs/snapshots.md)."""

    state: Path  # the device state (QEMU's migration stream)
    memory: Path  # the guest RAM image (sparse)
    # a running VM's sealed memfd of the same image to map too (/proc/<pid>/fd/<n>): restores
    # of one snapshot share the pages none of them wrote
    share_from: Path | None = None
    tag: str = ""  # what it is resumed from (a snapshot's uid, "suspend"), for the records
    # True: the image is sealed and mapped copy-on-write (a snapshot's, shared by its
    # restores); False: the VM gets its own copy, mapped shared (a suspended VM's RAM)
    private: bool = True

    @property
    def memory_in_state(self) -> bool:
        """No RAM image: the RAM is in the device state's stream (saved from a VM whose RAM
        the host could not read: one resumed copy-on-write)."""
        return not self.memory.exists()


@dataclass(frozen=True)
class SaveRequest:
    """Save a running machine (docs/snapshots.md): its device state to ``state`` and its RAM
    to ``memory`` (new files), its disk's copy-on-write layer frozen under ``freeze`` (a new,
    empty layer made by the caller) when given; the machine runs on, or stops (``stop``)."""

    state: Path
    memory: Path
    freeze: Path | None = None
    stop: bool = False


@dataclass(frozen=True)
class SaveResult:
    paused_seconds: float  # how long the guest's vCPUs stood still
    state_bytes: int
    memory_bytes: int  # the RAM pages the guest used, all that was written


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
    resume: Resume | None = None
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


def guest_nic_args(att: Attachment, mac: str) -> list[str]:
    """``ignite.nic=NAME,MAC[,CIDR...]`` words for /init when the VM has extra NICs: eth0 and
    each extra one, so /init names every NIC by its MAC (the kernel's probe order is not the
    command line's) and gives the extra ones their addresses (docs/internals.md)."""
    if not att.extra_nics:
        return []
    words = [f"ignite.nic=eth0,{mac}"]
    words += [",".join(["ignite.nic=" + n.guest_name, n.mac, *n.cidrs]) for n in att.extra_nics]
    return words


def with_guest_ip(cmdline: str, att: Attachment, hostname: str, mac: str = "") -> str:
    """The command line with the attachment's ``ip=`` appended (an existing ``ip=`` wins), and
    its extra NICs' ``ignite.nic=`` words."""
    words = cmdline.split()
    arg = guest_ip_arg(att, hostname)
    if arg is not None and not any(word.startswith("ip=") for word in words):
        words.append(arg)
    return " ".join([*words, *guest_nic_args(att, mac)])
