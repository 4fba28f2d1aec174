"""VMs made from a snapshot: `ignite run --snapshot SNAP`, a manifest's ``spec.snapshot``, and
`ignite fork VM -n N` (docs/snapshots.md).

Such a VM is its own machine from its first start: its own uid, name, disk layer (over the
snapshot's frozen one), network, MAC, hostname and random generator (the supervisor gives
the resumed guest its identity through the guest agent). It inherits the snapshot's memory,
processes, authorized SSH keys and host key, and logs in with the source VM's SSH key.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ignitevm.api import VM, Image, Kernel, Kind
from ignitevm.api.snapshot import Snapshot
from ignitevm.api.types import Vmm
from ignitevm.errors import IgniteError, NotFoundError, ValidationError
from ignitevm.layout import SnapshotFiles, VMFiles
from ignitevm.ops.services import Services
from ignitevm.vmm.base import Resume

log = logging.getLogger(__name__)


def prepare_from_snapshot(svc: Services, vm: VM) -> Snapshot:
    """Fill ``vm`` (asked for with ``spec.snapshot``) with its snapshot's machine; a setting
    given that the snapshot's machine cannot have is a one-line error."""
    from ignitevm.ops.refs import find_by_digest

    assert vm.spec.snapshot
    snap = svc.store.require(Kind.SNAPSHOT, vm.spec.snapshot)
    m, name = snap.status.machine, snap.metadata.name
    given = vm.spec.model_fields_set
    pairs = (("cpus", m.cpus, vm.spec.cpus), ("memory", m.memory, vm.spec.memory))
    for field, want, have in pairs:
        if field in given and want != have:
            raise ValidationError(
                f"--{field} {have}: snapshot {name} is a machine with {field} {want}",
                hint=f"leave --{field} out: a VM made from a snapshot is that machine",
            )
    if vm.spec.vmm not in (None, Vmm.QEMU, Vmm.AUTO) or m.vmm != Vmm.QEMU:
        raise ValidationError(f"snapshot {name} was made by {m.vmm}: only QEMU resumes here")
    require_fits_host(snap)
    kernel = find_by_digest(svc, Kind.KERNEL, m.kernel)
    image = find_by_digest(svc, Kind.IMAGE, m.image)
    if kernel is None or image is None:
        what = "kernel" if kernel is None else "image"
        raise NotFoundError(
            f"the {what} of snapshot {name} is no longer stored",
            hint=f"import it again, or remove the snapshot: ignite snapshot rm {name}",
        )
    # the network the source had, unless another is asked for (require_network_fits)
    vm.status.network.plugin = vm.status.network.plugin or snap.status.network_plugin
    if vm.status.network.plugin:
        require_network_fits(snap, vm.status.network.plugin)
    vm.spec.cpus, vm.spec.memory = m.cpus, m.memory
    vm.spec.image.oci = _same_name(svc, Kind.IMAGE, snap.spec.source.image, image)
    vm.spec.kernel.oci = _same_name(svc, Kind.KERNEL, snap.spec.source.kernel, kernel)
    vm.spec.vmm = Vmm.QEMU
    vm.status.vmm = Vmm.QEMU
    vm.status.snapshot = vm.status.resume = snap.metadata.uid
    vm.spec.snapshot = snap.metadata.uid
    key = svc.store.object_dir(Kind.SNAPSHOT, snap.metadata.uid) / SnapshotFiles.SSH_KEY
    if key.exists() and vm.spec.ssh is None:
        vm.spec.ssh = True  # the source's key: it is the source's machine
    return snap


def _same_name(svc: Services, kind: Kind, name: str, found: Image | Kernel) -> str:
    """The source VM's name of its image or kernel while that name still means the same
    digest (a tag imported again does not); else the stored object's own name."""
    from ignitevm.ops.images import find_image

    if name:
        named = find_image(svc, name) if kind == Kind.IMAGE else svc.store.find(kind, name)
        digest = found.status.oci_source.id
        if isinstance(named, Image | Kernel) and named.status.oci_source.id == digest:
            return name
    return found.metadata.name


def require_fits_host(snap: Snapshot) -> None:
    """A snapshot resumes only on the QEMU that saved it (its device state's format)."""
    from ignitevm.ops.versions import vmm_version

    have = vmm_version(snap.status.machine.vmm)
    if have != snap.status.machine.vmm_version:
        raise IgniteError(
            f"snapshot {snap.metadata.name} was saved by {snap.status.machine.vmm} "
            f"{snap.status.machine.vmm_version}; this host has {have}",
            hint="a saved device state resumes only on the QEMU version that saved it",
        )


def require_network_fits(snap: Snapshot, plugin: str) -> None:
    """The device model must match: a NIC iff the source had one, and QEMU's user-mode network
    (whose state is part of the saved machine) iff the source was on it."""
    had = snap.status.network_plugin or ("cni" if snap.status.machine.nic else "none")
    if snap.status.machine.nic != (plugin != "none") or (had == "user") != (plugin == "user"):
        raise ValidationError(
            f"snapshot {snap.metadata.name} is a machine on the {had} network: "
            f"--network-plugin {plugin} cannot be given to it",
            hint=f"leave --network-plugin out (it is {had})"
            + ("" if had in ("user", "none") else ", or use another plugin with a NIC but user"),
        )


def disk_and_key_from_snapshot(svc: Services, vm: VM, d: Path) -> None:
    """The VM's disk: an empty qcow2 layer over the snapshot's (O(1)); its SSH key: the
    source's, which the snapshot's guest already trusts."""
    from ignitevm.disk.cow import create_qcow2_overlay

    assert vm.status.snapshot
    snap_dir = svc.store.object_dir(Kind.SNAPSHOT, vm.status.snapshot)
    create_qcow2_overlay(snap_dir / SnapshotFiles.LAYER, d / VMFiles.DISK,
                         vm.spec.disk_size.bytes, base_format="qcow2")  # fmt: skip
    key = snap_dir / SnapshotFiles.SSH_KEY
    if vm.spec.ssh is True and key.exists():
        shutil.copy2(key, d / VMFiles.SSH_KEY)
        shutil.copy2(key.with_name(key.name + ".pub"), d / VMFiles.SSH_PUBKEY)


def resume_for(svc: Services, vm: VM, d: Path) -> Resume | None:
    """What the next start of ``vm`` resumes from: its own suspended state, or the snapshot
    it was made from (first start only); None: it boots."""
    from ignitevm.spawn.runtime import is_suspended

    if is_suspended(d):  # its own RAM, mapped shared: it is this VM's memory from now on
        return Resume(d / VMFiles.SUSPENDED_STATE, d / VMFiles.SUSPENDED_MEMORY, tag="suspend",
                      private=False)  # fmt: skip
    if vm.status.suspended:
        log.warning("VM %s was being suspended when that stopped: it boots afresh",
                    vm.metadata.name)  # fmt: skip
    if not vm.status.resume:
        return None
    snap = svc.store.find(Kind.SNAPSHOT, vm.status.resume)
    if snap is None:
        raise IgniteError(
            f"VM {vm.metadata.name} is to resume from snapshot {vm.status.resume}, which is gone",
            hint="remove the VM",
        )
    require_fits_host(snap)
    require_network_fits(snap, vm.status.network.plugin)
    sd = svc.store.object_dir(Kind.SNAPSHOT, snap.metadata.uid)
    image = (sd / SnapshotFiles.MEMORY).exists()  # absent: the RAM is in the state's stream
    sibling = _sibling_memory(svc, snap.metadata.uid) if image else None
    return Resume(sd / SnapshotFiles.STATE, sd / SnapshotFiles.MEMORY, share_from=sibling,
                  tag=snap.metadata.uid)  # fmt: skip


def _sibling_memory(svc: Services, suid: str) -> Path | None:
    """A running VM resumed from the same snapshot: its supervisor's sealed memfd, to map
    too (the pages no one wrote are then shared)."""
    from ignitevm.spawn.runtime import pid_in_dir, runtime_status

    for other in svc.store.list(Kind.VM):
        od = svc.store.object_dir(Kind.VM, other.metadata.uid)
        st = runtime_status(od)
        if (
            st
            and st.snapshot == suid
            and st.memory_fd is not None
            and pid_in_dir(st.supervisor_pid, od)
        ):
            return Path(f"/proc/{st.supervisor_pid}/fd/{st.memory_fd}")
    return None


def resumed(svc: Services, vm: VM, d: Path) -> None:
    """After a successful resume: a suspended VM's saved state goes; a VM made from a
    snapshot boots (no longer resumes) from now on."""
    for name in (VMFiles.SUSPENDED_STATE, VMFiles.SUSPENDED_MEMORY):
        (d / name).unlink(missing_ok=True)

    def done(current: VM) -> VM:
        current.status.suspended = None
        current.status.resume = None
        return current

    svc.store.update(Kind.VM, vm.metadata.uid, done)
