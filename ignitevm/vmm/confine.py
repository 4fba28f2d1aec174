"""Preparing a VM's jail on the host (the supervisor's side, as root): the VM's own uid/gid from
the reserved range, its cgroup with limits, its files given to that uid, the mount point of the
jail's root; and undoing it (docs/runtime.md "The jail"). ``vmm/jail.py`` is the child's side.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from ignitevm.layout import VMFiles
from ignitevm.vmm import cgroups
from ignitevm.vmm.base import MachineSpec
from ignitevm.vmm.jail import DEVICES, Bind, JailSpec, claim_id, release_id
from ignitevm.vmm.share import Grant, prepare_share, release_share

log = logging.getLogger(__name__)

# QEMU's own memory beyond the guest's RAM, measured for a 256 MiB TCG guest
# (docs/runtime.md "Figures"): the TCG translation cache 32 MiB, the kernel image it maps
# 60 MiB, heap, binary and libraries ~40 MiB; the rest is headroom for the page cache of
# its disk I/O, which the cgroup reclaims rather than kills for.
MEMORY_OVERHEAD_MIB = 192
# QEMU's threads: main, RCU, one per vCPU, up to 64 block I/O workers, a few more
PIDS_BASE = 128


@dataclass(frozen=True)
class Jail:
    uid: int
    gid: int
    root: Path  # the (empty) mount point of the jail's root, in vm_dir
    cgroup_procs: tuple[Path, ...]  # () when the host gave no cgroup
    claim_fd: int  # holds the uid for this run; closed by release()
    grants: tuple[Grant, ...] = ()  # the shares the VMM's uid may reach for this run

    @property
    def granted(self) -> tuple[Path, ...]:
        return tuple(g.path for g in self.grants)


def limits_for(machine: MachineSpec) -> cgroups.Limits:
    return cgroups.Limits(
        memory_bytes=(machine.memory_mib + MEMORY_OVERHEAD_MIB) << 20,
        vcpus=machine.vcpus,
        pids=PIDS_BASE + machine.vcpus,
    )


def confine(machine: MachineSpec, readable: Iterable[Path]) -> Jail | None:
    """The jail for one run of ``machine`` whose VMM opens ``readable`` itself (its own files:
    they are given to its uid); None (with a warning saying why) when this host cannot give
    one: not root, or no id left in the range."""
    if os.geteuid() != 0:
        log.info("not root: the VMM runs as this user, unjailed by uid")
        return None
    claimed = claim_id(machine.uid)
    if claimed is None:
        log.warning("no jail id left in the reserved range: the VMM runs as root")
        return None
    uid, fd = claimed
    procs: tuple[Path, ...] = ()
    try:
        procs = cgroups.create(machine.uid, limits_for(machine))
    except OSError as exc:
        log.warning("no cgroup for VM %s (%s): it runs without memory/cpu/pids limits",
                    machine.name, exc.strerror or exc)  # fmt: skip
    jail = Jail(uid, uid, machine.vm_dir / VMFiles.JAIL, procs, fd)
    try:
        for path in readable:
            os.chown(path, uid, uid)
        jail.root.mkdir(mode=0o700, exist_ok=True)
        for share in machine.shares:  # docs/runtime.md "Host directories"
            try:
                grant = prepare_share(share.path, uid, uid, readonly=share.readonly)
            except BaseException:
                release_after_crash(uid, [share.path])  # the part of the tree it got to
                raise
            if grant is not None:
                jail = replace(jail, grants=(*jail.grants, grant))
    except BaseException:
        release(jail)
        raise
    return jail


def release(jail: Jail) -> None:
    for grant in jail.grants:
        try:
            release_share(grant)
        except OSError as exc:  # the others are still given back
            log.warning("cannot take back the VMM's access to %s: %s", grant.path, exc)
    cgroups.remove(jail.cgroup_procs)
    release_id(jail.uid, jail.claim_fd)


def release_after_crash(uid: int, shares: Iterable[Path]) -> None:
    """``release`` for the shares of a run whose supervisor died (kill -9): what the run's
    ACL entries were before is unknown, so only the VMM's entries go (share.py ``complete``)."""
    for path in shares:
        try:
            release_share(Grant(path, uid, uid, complete=False))
        except OSError as exc:
            log.warning("cannot take back a dead VMM's access to %s: %s", path, exc)


def jail_spec(jail: Jail, machine: MachineSpec, *, new_netns: bool, kvm: bool) -> JailSpec:
    """What the VMM of ``machine`` may see, at their own paths: its kernel and initramfs (it
    loads them by path), the shared host directories (9p opens them by path) and a /proc of
    its own (its RAM is /proc/self/fd/N); its disks,
    sockets and tap come as open file descriptors."""
    files = (
        Bind(machine.vmlinux),
        Bind(machine.initrd),
        *(Bind(share.path, readonly=share.readonly) for share in machine.shares),
    )
    devices = (*DEVICES, "kvm") if kvm else DEVICES
    return JailSpec(uid=jail.uid, gid=jail.gid, root=jail.root, binds=files,
                    devices=devices, new_netns=new_netns, cgroup_procs=jail.cgroup_procs,
                    proc=True)  # fmt: skip
