"""`ignite snapshot create|ls|rm`: a running VM saved (device state, RAM, its disk's layer
frozen) as a stored object; the layers a VM's disk sits on (docs/snapshots.md).

Making one is a transaction across two processes: this one prepares (a record in the VM's
directory, a scratch directory, the new disk layer), the VM's supervisor saves and swaps the
disk's layers (it holds the VMM and its RAM; a killed CLI does not stop it), this one
publishes. Whoever next finds the record (``finish_pending``: start, rm, ps, snapshot)
publishes a snapshot the supervisor finished and undoes one it did not, so no half snapshot is
ever listed and the VM's disk always has a whole chain under it.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ignitevm import proc
from ignitevm.api import VM, Kind, ObjectMeta, Size, new_uid
from ignitevm.api.snapshot import Snapshot, SnapshotMachine, SnapshotSource, SnapshotSpec
from ignitevm.api.types import Vmm
from ignitevm.errors import AlreadyExistsError, ConflictError, IgniteError, InUseError
from ignitevm.layout import SnapshotFiles, VMFiles
from ignitevm.ops.services import Services
from ignitevm.ops.vmlist import require_vm, vm_dir
from ignitevm.records import RecordError, read_record, write_record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pending:
    """``vm/<uid>/snapshot.pending``: a snapshot being made of this VM."""

    snapshot: str  # its uid
    scratch: Path  # tmp/snapshot-<uid>: its files until published
    name: str
    parent: str  # the snapshot the VM's disk sat on ("" : the image)


def layers_under(svc: Services, vm: VM) -> tuple[Path, ...]:
    """The frozen layers a VM's disk sits on, top down (its snapshot's, its parent's...)."""
    layers: list[Path] = []
    uid = vm.status.snapshot or ""
    seen: set[str] = set()
    while uid and uid not in seen:
        seen.add(uid)
        snap = svc.store.find(Kind.SNAPSHOT, uid)
        if snap is None:
            raise IgniteError(
                f"the disk of VM {vm.metadata.name} sits on snapshot {uid}, which is gone",
                hint="the VM cannot start without it: remove the VM",
            )
        layers.append(svc.store.object_dir(Kind.SNAPSHOT, uid) / SnapshotFiles.LAYER)
        uid = snap.status.parent
    return tuple(layers)


def create_snapshot(
    svc: Services, query: str, *, name: str | None = None, stop: bool = False
) -> tuple[Snapshot, dict[str, float]]:
    """Snapshot the running VM ``query``; it runs on (or stops, ``stop``). The snapshot and
    the figures of the save (paused_seconds, state_bytes, memory_bytes)."""

    from ignitevm.store.locks import try_file_lock

    vm = require_vm(svc, query)
    d = vm_dir(svc, vm)
    lock = try_file_lock(d / VMFiles.SNAPSHOT_LOCK)
    if lock is None:
        raise ConflictError(f"a snapshot of VM {vm.metadata.name} is being made",
                            hint="wait for it: ignite snapshot ls shows it once made")  # fmt: skip
    try:
        return _create(svc, vm, d, name, stop)
    finally:
        os.close(lock)


def _create(
    svc: Services, vm: VM, d: Path, name: str | None, stop: bool
) -> tuple[Snapshot, dict[str, float]]:
    from ignitevm import spawn
    from ignitevm.spawn.client.control import request

    finish_pending(svc, vm, own=True)
    require_saveable(vm, copies=True)
    status = spawn.runtime_status(d)
    if status is None:
        raise ConflictError(
            f"VM {vm.metadata.name} is not running: a snapshot saves a running machine",
            hint=f"start it: ignite start {vm.metadata.name}",
        )
    if not (d / VMFiles.DISK).exists():
        raise IgniteError(f"VM {vm.metadata.name}'s disk is a raw file (a VM made for "
                          "Firecracker), which cannot be frozen in O(1)",
                          hint="snapshots need a VM made for QEMU; ignite suspend works "
                          "with either")  # fmt: skip
    if name and svc.store.find(Kind.SNAPSHOT, name) is not None:
        raise AlreadyExistsError(f"a snapshot named {name!r} already exists",
                            hint="choose another --name")  # fmt: skip
    suid = new_uid()
    scratch = svc.store.tmp_dir() / f"snapshot-{suid}"
    scratch.mkdir(mode=0o700)
    pending = Pending(suid, scratch, name or f"{vm.metadata.name}-{suid[:6]}",
                      vm.status.snapshot or "")  # fmt: skip
    write_record(d / VMFiles.SNAPSHOT_PENDING, pending, fsync=True)
    try:
        _new_layer(svc, vm, d, suid)
        reply = request(d, "save", state=str(scratch / SnapshotFiles.STATE),
                        memory=str(scratch / SnapshotFiles.MEMORY),
                        freeze=str(d / VMFiles.NEXT_DISK), top=str(d / VMFiles.DISK),
                        keep=str(scratch / SnapshotFiles.LAYER),
                        done=str(scratch / SnapshotFiles.DONE), stop=stop)  # fmt: skip
    finally:
        snap = finish_pending(svc, vm, status.vmm, own=True)
    if snap is None:
        if (d / VMFiles.SNAPSHOT_PENDING).exists():  # the supervisor still saves
            raise IgniteError(f"the snapshot of VM {vm.metadata.name} is still being saved",
                              hint="ignite snapshot ls shows it once it is done")  # fmt: skip
        raise IgniteError(f"the snapshot of VM {vm.metadata.name} was not made",
                          hint="see the VM's supervisor.log")  # fmt: skip
    if stop:
        spawn.wait_until_stopped(d, 30.0)
        spawn.cleanup_stale(d)
    return snap, {k: float(v) for k, v in reply.items() if k != "ok"}


def require_saveable(vm: VM, *, copies: bool) -> None:
    """What QEMU cannot save, or a copy of the machine could not have of its own
    (``copies``: a snapshot, which other VMs are made from), is refused before anything."""
    from ignitevm.errors import ValidationError
    from ignitevm.network.multinet import annotated_interfaces

    name = vm.metadata.name
    if vm.spec.storage.shares:
        raise ValidationError(
            f"VM {name} has host directories (--share): QEMU cannot save a machine whose 9p "
            "export is mounted",
            hint="make the VM without --share to snapshot or suspend it",
        )
    if copies and vm.spec.storage.volumes:
        raise ValidationError(
            f"VM {name} has volumes (-v): every VM made from its snapshot would write the same "
            "host block device",
            hint="snapshot a VM without volumes; ignite suspend keeps them",
        )
    if copies and annotated_interfaces(vm.metadata.annotations):
        raise ValidationError(
            f"VM {name} has extra interfaces (ignite.weave.works/interface/ annotations), which "
            "belong to its network namespace alone",
            hint="snapshot a VM without them; ignite suspend keeps them",
        )


def _new_layer(svc: Services, vm: VM, d: Path, suid: str) -> None:
    """The VM's next top layer: empty, over where the frozen one will be once published."""
    final = svc.store.object_dir(Kind.SNAPSHOT, suid) / SnapshotFiles.LAYER
    (d / VMFiles.NEXT_DISK).unlink(missing_ok=True)
    proc.run([proc.require_tool("qemu-img"), "create", "-q", "-f", "qcow2", "-F", "qcow2",
              "-u", "-b", str(final), "-o", "cluster_size=65536,lazy_refcounts=on",
              str(d / VMFiles.NEXT_DISK), str(vm.spec.disk_size.bytes)])  # fmt: skip


def finish_pending(
    svc: Services, vm: VM, vmm: str = "qemu", *, own: bool = False
) -> Snapshot | None:
    """Publish the VM's pending snapshot if its supervisor finished it, else undo it (the
    disk's old layer back on top, the scratch files gone). Cheap when there is none. Nothing
    is done while a `snapshot create` runs (it holds snapshot.lock; ``own``: the caller is
    it) or the supervisor saves (save.lock): that snapshot is theirs to finish."""
    from ignitevm.store.locks import try_file_lock

    d = vm_dir(svc, vm)
    if not (d / VMFiles.SNAPSHOT_PENDING).exists():
        return None
    locks: list[int] = []
    try:
        for name in (() if own else (VMFiles.SNAPSHOT_LOCK,)) + (VMFiles.SAVE_LOCK,):
            fd = try_file_lock(d / name)
            if fd is None:
                return None
            locks.append(fd)
        return _finish(svc, vm, d, vmm)
    finally:
        for fd in locks:
            os.close(fd)


def _finish(svc: Services, vm: VM, d: Path, vmm: str) -> Snapshot | None:
    try:
        pending = read_record(Pending, d / VMFiles.SNAPSHOT_PENDING)
    except FileNotFoundError:
        return None
    except (OSError, RecordError) as exc:
        log.warning("dropping an unreadable %s: %s", VMFiles.SNAPSHOT_PENDING, exc)
        (d / VMFiles.SNAPSHOT_PENDING).unlink(missing_ok=True)
        return None
    if (pending.scratch / SnapshotFiles.DONE).exists():
        snap = _publish(svc, vm, pending, vmm)
    else:
        _undo(d, pending)
        snap = None
    (d / VMFiles.NEXT_DISK).unlink(missing_ok=True)
    (d / VMFiles.SNAPSHOT_PENDING).unlink(missing_ok=True)
    return snap


def _undo(d: Path, pending: Pending) -> None:
    """The supervisor did not finish: if it had swapped the disk's layers, the old layer
    (still named in the scratch dir) goes back on top; the scratch files go."""
    kept = pending.scratch / SnapshotFiles.LAYER
    top = d / VMFiles.DISK
    if kept.exists() and top.exists() and not os.path.samefile(kept, top):
        os.replace(kept, top)
    shutil.rmtree(pending.scratch, ignore_errors=True)
    log.warning("an unfinished snapshot of the VM in %s was undone", d)


def _publish(svc: Services, vm: VM, pending: Pending, vmm: str) -> Snapshot:
    from ignitevm.ops.versions import vmm_version

    d = vm_dir(svc, vm)
    key = d / VMFiles.SSH_KEY
    if key.exists():  # the VMs made from it log in with the source's key
        shutil.copy2(key, pending.scratch / SnapshotFiles.SSH_KEY)
        shutil.copy2(d / VMFiles.SSH_PUBKEY, pending.scratch / (SnapshotFiles.SSH_KEY + ".pub"))
    (pending.scratch / SnapshotFiles.DONE).unlink()
    size = sum(p.stat().st_blocks * 512 for p in pending.scratch.iterdir())
    image = pending.scratch / SnapshotFiles.MEMORY  # absent: the RAM is in the state's stream
    memory = image.stat().st_blocks * 512 if image.exists() else 0
    source = SnapshotSource(uid=vm.metadata.uid, name=vm.metadata.name,
                            image=vm.spec.image.oci, kernel=vm.spec.kernel.oci)  # fmt: skip
    snap = Snapshot(
        metadata=ObjectMeta(name=pending.name, uid=pending.snapshot, created=datetime.now(UTC)),
        spec=SnapshotSpec(source=source),
    )
    snap.status.machine = machine_of(vm, vmm, vmm_version(vmm))
    snap.status.parent = pending.parent
    snap.status.size, snap.status.memory_size = Size(size), Size(memory)
    snap.status.network_plugin = vm.status.network.plugin
    svc.store.add_staged(snap, pending.scratch)

    def sits_on(current: VM) -> VM:
        current.status.snapshot = pending.snapshot
        return current

    svc.store.update(Kind.VM, vm.metadata.uid, sits_on)
    return snap


def machine_of(vm: VM, vmm: str, version: str) -> SnapshotMachine:
    """The device model a restore must match (docs/snapshots.md "What must match")."""
    return SnapshotMachine(
        vmm=Vmm(vmm), vmm_version=version, cpus=vm.spec.cpus, memory=vm.spec.memory,
        kernel=vm.status.kernel.id, image=vm.status.image.id,
        disks=1 + len(vm.spec.storage.volumes), nic=vm.status.network.plugin != "none",
        devices=["virtio-serial:org.ignitevm.agent"],
    )  # fmt: skip


def list_snapshots(svc: Services) -> list[Snapshot]:
    """The stored snapshots, after settling the snapshots nobody is making any more (one a
    killed `snapshot create` left: published if its supervisor finished it, else undone)."""
    if os.geteuid() == 0:
        for vm in svc.store.list(Kind.VM):
            if (vm_dir(svc, vm) / VMFiles.SNAPSHOT_PENDING).exists():
                finish_pending(svc, vm)
    return [s for s in svc.store.list(Kind.SNAPSHOT) if isinstance(s, Snapshot)]


def remove_snapshot(svc: Services, query: str, *, force: bool = False) -> Snapshot:
    snap = svc.store.require(Kind.SNAPSHOT, query)
    uid = snap.metadata.uid
    users = [v.metadata.name for v in svc.store.list(Kind.VM)
             if v.status.snapshot == uid or v.status.resume == uid]  # fmt: skip
    children = [s.metadata.name for s in svc.store.list(Kind.SNAPSHOT) if s.status.parent == uid]
    if (users or children) and not force:
        who = ", ".join([*(f"VM {u}" for u in users), *(f"snapshot {c}" for c in children)])
        raise InUseError(
            f"snapshot {snap.metadata.name} is in use by {who}",
            hint="their disks sit on its layer: remove them first, or use -f (they will "
            "no longer start)",
        )
    svc.store.delete(Kind.SNAPSHOT, uid)
    return snap
