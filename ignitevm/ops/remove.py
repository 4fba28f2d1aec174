"""`ignite rm`: a VM and everything of it (disk, keys, runtime, network)."""

from __future__ import annotations

from ignitevm.api import VM, Kind
from ignitevm.errors import ConflictError, NotFoundError
from ignitevm.ops.services import Services
from ignitevm.ops.vmlist import require_vm, vm_dir


def remove_vm(svc: Services, query: str, *, force: bool = False) -> VM:
    """Remove a VM (``force``: stopping it first). A damaged VM (its metadata.json unreadable)
    and a running VM whose directory was deleted are removed by uid with ``force``."""
    from ignitevm import spawn

    try:
        vm = require_vm(svc, query)
    except NotFoundError:
        return _remove_damaged(svc, query, force=force)
    d = vm_dir(svc, vm)
    if spawn.is_running(d):
        if not force:
            raise ConflictError(
                f"VM {vm.metadata.name} is running",
                hint=f"stop it first (ignite stop {vm.metadata.name}) or use rm -f",
            )
        spawn.kill(d)
    spawn.cleanup_stale(d)
    svc.store.delete(Kind.VM, vm.metadata.uid)
    return vm


def _remove_damaged(svc: Services, query: str, *, force: bool) -> VM:
    from ignitevm import spawn
    from ignitevm.api import ObjectMeta, is_uid

    matches = [u for u in svc.store.damaged(Kind.VM) if u.startswith(query.lower())]
    if len(matches) == 1:
        uid = matches[0]
    elif force and is_uid(query) and not svc.store.object_dir(Kind.VM, query).exists():
        uid = query  # a VM whose directory was deleted while it ran: its processes remain
    else:
        raise NotFoundError(f"vm {query!r} not found", hint="see `ignite ps -a`")
    d = svc.store.object_dir(Kind.VM, uid)
    if not force:
        raise ConflictError(
            f"VM {uid} is damaged (its metadata.json cannot be read)",
            hint=f"remove it and whatever of it runs with: ignite rm -f {uid}",
        )
    if d.exists():
        spawn.kill(d)
        svc.store.delete(Kind.VM, uid)
    else:
        spawn.kill_orphan(d)
    return VM(metadata=ObjectMeta(uid=uid))
