"""`ignite rm`: a VM and everything of it (disk, keys, runtime, network)."""

from __future__ import annotations

from ignitevm.api import VM, Kind
from ignitevm.errors import ConflictError
from ignitevm.ops.services import Services
from ignitevm.ops.vmlist import require_vm, vm_dir


def remove_vm(svc: Services, query: str, *, force: bool = False) -> VM:
    from ignitevm import spawn

    vm = require_vm(svc, query)
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
