"""`ignite stop` (ACPI power button, then a hard stop after a timeout) and `ignite kill`."""

from __future__ import annotations

import logging

from ignitevm.api import VM, Kind
from ignitevm.ops.services import Services
from ignitevm.ops.vmfiles import vm_dir

log = logging.getLogger(__name__)

STOP_TIMEOUT = 30.0


def stop_vm(svc: Services, query: str, *, force: bool = False, timeout: float = STOP_TIMEOUT) -> VM:
    """Stop gracefully; after ``timeout`` seconds (or at once with ``force``) stop hard."""
    from ignitevm import spawn

    vm = svc.store.require(Kind.VM, query)
    d = vm_dir(svc, vm)
    if force:
        spawn.kill(d)
    elif not spawn.request_stop(d, timeout):
        log.warning("VM %s did not power off in %g s: stopping it hard", vm.metadata.name, timeout)
        spawn.kill(d)
    spawn.cleanup_stale(d, None)
    return record_stopped(svc, vm)


def kill_vm(svc: Services, query: str) -> VM:
    from ignitevm import spawn

    vm = svc.store.require(Kind.VM, query)
    spawn.kill(vm_dir(svc, vm))
    return record_stopped(svc, vm)


def record_stopped(svc: Services, vm: VM) -> VM:
    def update(current: VM) -> VM:
        current.status.running = False
        current.status.pid = None
        current.status.network.ip_addresses = []
        return current

    return svc.store.update(Kind.VM, vm.metadata.uid, update)
