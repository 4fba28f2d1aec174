"""`ignite stop` (ACPI power button, then a hard stop after a timeout) and `ignite kill`."""

from __future__ import annotations

import logging

from ignitevm.api import VM, Kind
from ignitevm.ops.services import Services
from ignitevm.ops.vmlist import record_state, require_vm, vm_dir

log = logging.getLogger(__name__)

STOP_TIMEOUT = 30.0


def stop_vm(svc: Services, query: str, *, force: bool = False, timeout: float = STOP_TIMEOUT) -> VM:
    """Stop gracefully; after ``timeout`` seconds (or at once with ``force``) stop hard."""
    from ignitevm import spawn

    vm = require_vm(svc, query)
    d = vm_dir(svc, vm)
    record_user_stop(svc, vm)
    if force:
        spawn.kill(d)
    elif not spawn.request_stop(d, timeout):
        log.warning("VM %s did not power off in %g s: stopping it hard", vm.metadata.name, timeout)
        spawn.kill(d)
    spawn.cleanup_stale(d)
    _discard_suspended(svc, vm)
    return record_state(svc, vm, None)


def _discard_suspended(svc: Services, vm: VM) -> None:
    """A stop of a suspended VM powers it off: its saved machine is dropped (docs/snapshots.md)."""
    from ignitevm.ops.pausing import discard_suspended, is_suspended

    if is_suspended(vm_dir(svc, vm)):
        log.info("VM %s was suspended: its saved state is dropped", vm.metadata.name)
        discard_suspended(svc, vm)


def kill_vm(svc: Services, query: str) -> VM:
    from ignitevm import spawn

    vm = require_vm(svc, query)
    record_user_stop(svc, vm)
    spawn.kill(vm_dir(svc, vm))
    _discard_suspended(svc, vm)
    return record_state(svc, vm, None)


def record_user_stop(svc: Services, vm: VM) -> None:
    """A person stopped the VM: its restart policy must not start it again (docs/gitops.md
    "Restart policies"). Recorded before the stop, after any start in progress has launched
    (the start lock): a restart that checked the VM just before then finds the mark, and one
    that already launched is stopped here."""
    from ignitevm.ops.start import starting

    def mark(current: VM) -> VM:
        current.status.stopped_by_user = True
        return current

    with starting(vm, vm_dir(svc, vm), wait=True):
        svc.store.update(Kind.VM, vm.metadata.uid, mark)
