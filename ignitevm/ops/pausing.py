"""`ignite pause`, `unpause` (Docker's verbs: the vCPUs frozen, the memory kept) and `ignite
suspend` (the machine saved into its own directory, the VMM gone, its memory freed; the next
`ignite start` resumes it where it was). See docs/snapshots.md.

A VM is suspended when its last run ended by a suspend (last-run.json, written by the
supervisor) and both saved files are there: a suspend killed halfway leaves a VM that boots
afresh, never one resumed from half a state.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ignitevm.api import VM, Kind
from ignitevm.errors import ConflictError, IgniteError
from ignitevm.layout import VMFiles
from ignitevm.ops.services import Services
from ignitevm.ops.vmlist import record_state, require_vm, vm_dir
from ignitevm.spawn.runtime import is_suspended

__all__ = ["discard_suspended", "is_suspended", "pause_vm", "suspend_vm", "unpause_vm"]

log = logging.getLogger(__name__)

SUSPEND_FILES = (VMFiles.SUSPENDED_STATE, VMFiles.SUSPENDED_MEMORY)


def _running(svc: Services, query: str, verb: str) -> tuple[VM, Path]:
    from ignitevm import spawn

    vm = require_vm(svc, query)
    d = vm_dir(svc, vm)
    if spawn.runtime_status(d) is None:
        raise ConflictError(
            f"VM {vm.metadata.name} is not running: only a running VM can be {verb}",
            hint=f"start it: ignite start {vm.metadata.name}",
        )
    return vm, d


def pause_vm(svc: Services, query: str) -> VM:
    from ignitevm.spawn.client.control import request

    vm, d = _running(svc, query, "paused")
    request(d, "pause", timeout=10.0)
    return vm


def unpause_vm(svc: Services, query: str) -> VM:
    from ignitevm.spawn.client.control import request

    vm, d = _running(svc, query, "unpaused")
    request(d, "unpause", timeout=10.0)
    return vm


def suspend_vm(svc: Services, query: str) -> VM:
    """Save the running VM into its directory and let its VMM exit; `ignite start` resumes."""
    from ignitevm import spawn
    from ignitevm.ops.snapshots import finish_pending, require_saveable
    from ignitevm.spawn.client.control import request

    vm, d = _running(svc, query, "suspended")
    finish_pending(svc, vm)
    require_saveable(vm, copies=False)
    for name in SUSPEND_FILES:  # a suspend that did not finish earlier
        (d / name).unlink(missing_ok=True)
    try:
        request(d, "save", state=str(d / VMFiles.SUSPENDED_STATE),
                memory=str(d / VMFiles.SUSPENDED_MEMORY), stop=True)  # fmt: skip
    except IgniteError:
        for name in SUSPEND_FILES:
            (d / name).unlink(missing_ok=True)
        raise
    if not spawn.wait_until_stopped(d, 30.0):
        log.warning("VM %s was saved but its VMM did not exit: killing it", vm.metadata.name)
        spawn.kill(d)
    spawn.cleanup_stale(d)

    def suspended(current: VM) -> VM:
        current.status.suspended = True
        return current

    svc.store.update(Kind.VM, vm.metadata.uid, suspended)
    return record_state(svc, vm, None)


def discard_suspended(svc: Services, vm: VM) -> None:
    """Forget a suspended VM's saved machine (`ignite stop` of a suspended VM: it is off)."""
    d = vm_dir(svc, vm)
    for name in SUSPEND_FILES:
        (d / name).unlink(missing_ok=True)

    def off(current: VM) -> VM:
        current.status.suspended = None
        return current

    svc.store.update(Kind.VM, vm.metadata.uid, off)
