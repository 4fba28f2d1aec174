"""`ignite stop` (ACPI power button, then a hard stop after a timeout) and `ignite kill`."""

from __future__ import annotations

import logging

from ignitevm.api import VM
from ignitevm.ops.services import Services
from ignitevm.ops.vmlist import record_state, require_vm, vm_dir

log = logging.getLogger(__name__)

STOP_TIMEOUT = 30.0


def stop_vm(svc: Services, query: str, *, force: bool = False, timeout: float = STOP_TIMEOUT) -> VM:
    """Stop gracefully; after ``timeout`` seconds (or at once with ``force``) stop hard."""
    from ignitevm import spawn

    vm = require_vm(svc, query)
    d = vm_dir(svc, vm)
    if force:
        spawn.kill(d)
    elif not spawn.request_stop(d, timeout):
        log.warning("VM %s did not power off in %g s: stopping it hard", vm.metadata.name, timeout)
        spawn.kill(d)
    spawn.cleanup_stale(d)
    return record_state(svc, vm, None)


def kill_vm(svc: Services, query: str) -> VM:
    from ignitevm import spawn

    vm = require_vm(svc, query)
    spawn.kill(vm_dir(svc, vm))
    return record_state(svc, vm, None)
