"""`ignite start`: launch the VM's supervisor with its plan, wait for the guest to boot."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ignitevm.api import VM, Kind
from ignitevm.errors import ConflictError, IgniteError
from ignitevm.fsutil import restrict
from ignitevm.layout import OBJECT_DIR_MODE, VMFiles
from ignitevm.ops.services import Services
from ignitevm.ops.vmlist import record_state, require_vm, vm_dir
from ignitevm.store.locks import file_lock, try_file_lock

if TYPE_CHECKING:
    from ignitevm.spawn import LaunchPlan

log = logging.getLogger(__name__)

BOOT_TIMEOUT = 180.0  # TCG on 2 shared cores: a boot takes 5-10 s, a loaded machine much more


def start_vm(
    svc: Services,
    query: str,
    *,
    wait: bool = True,
    timeout: float = BOOT_TIMEOUT,
    network_plugin: str | None = None,
    debug: bool = False,
    vmm: str | None = None,
    ignore_preflight: frozenset[str] = frozenset(),
    unless_stopped_by_user: bool = False,
) -> VM:
    """Start a created or stopped VM; returns when its init runs (``wait``). ``vmm``
    overrides the VM's choice for this start; ``ignore_preflight`` names checks to skip;
    ``unless_stopped_by_user``: a restart by policy, refused (ConflictError) when a person
    stopped the VM, as checked under the start lock."""
    from ignitevm import spawn
    from ignitevm.network.registry import resolve_plugin_name
    from ignitevm.ops.launchplan import build_launch_plan
    from ignitevm.ops.snapshots import finish_pending

    vm = require_vm(svc, query)
    d = vm_dir(svc, vm)
    finish_pending(svc, vm)
    with starting(vm, d):
        if spawn.is_running(d):
            raise ConflictError(
                f"VM {vm.metadata.name} is already running",
                hint=f"stop it first: ignite stop {vm.metadata.name}",
            )
        vm = _claim_start(svc, vm, unless_stopped_by_user)
        # the previous run's leftovers go with the plugin that made them, whatever this start
        # uses
        spawn.cleanup_stale(d)
        restrict(d, OBJECT_DIR_MODE, VMFiles.PRIVATE)  # what an older version left readable
        wanted = network_plugin or vm.status.network.plugin or svc.default_network_plugin()
        plugin_name = resolve_plugin_name(wanted)  # an unknown name fails here, naming them
        plan = _preflight(build_launch_plan(svc, vm, d, plugin_name, debug=debug, vmm=vmm),
                          ignore_preflight)  # fmt: skip
        started = time.monotonic()
        spawn.launch(plan, early=not wait)  # --wait=false: back when the user has to act
        if plan.machine.resume is not None:  # running where it was saved: nothing boots
            from ignitevm.ops.restore import resumed

            resumed(svc, vm, d)
            return record_state(svc, vm, spawn.runtime_status(d))
    try:
        if wait:
            spawn.wait_for_boot(d, plan.boot_marker, timeout)
    except IgniteError:
        if not debug:
            spawn.kill(d)
        else:  # the VM is kept running for debugging: inspect and ps say so
            record_state(svc, vm, spawn.runtime_status(d))
        raise
    recorded = record_state(svc, vm, spawn.runtime_status(d))
    if wait and vm.spec.ssh and plugin_name != "none":
        _wait_for_ssh(svc, vm, max(1.0, timeout - (time.monotonic() - started)))
    return recorded


def _claim_start(svc: Services, vm: VM, unless_stopped_by_user: bool) -> VM:
    """The VM as stored now, with a person's stop cleared: this start is what is wanted now."""
    if (
        unless_stopped_by_user
        and svc.store.require(Kind.VM, vm.metadata.uid).status.stopped_by_user
    ):
        raise ConflictError(
            f"VM {vm.metadata.name} was stopped by a user: not restarted",
            hint=f"start it by hand: ignite start {vm.metadata.name}",
        )

    def clear(current: VM) -> VM:
        current.status.stopped_by_user = None
        return current

    return svc.store.update(Kind.VM, vm.metadata.uid, clear)


@contextmanager
def starting(vm: VM, d: Path, *, wait: bool = False) -> Iterator[None]:
    """Hold ``vm/<uid>/start.lock`` from the "is it running?" check until the supervisor holds
    the VM directory's lock: a second start of the VM is refused at once instead of writing
    the same boot files and waiting out the first supervisor's lock. ``wait``: block instead
    (a stop waits for a start in progress, so it stops what that start launched)."""
    path = d / VMFiles.START_LOCK
    if wait:
        with file_lock(path):
            yield
        return
    fd = try_file_lock(path)
    if fd is None:
        raise ConflictError(
            f"VM {vm.metadata.name} is being started by another command",
            hint=f"wait for it; `ignite ps` shows it once it runs ({vm.metadata.name})",
        )
    try:
        yield
    finally:
        os.close(fd)


def _wait_for_ssh(svc: Services, vm: VM, timeout: float) -> None:
    """With --ssh, "booted" means sshd answers (ignite run returns ready for ignite exec);
    with a key of ours, that a login works: the VM's shared connection is then open."""
    from ignitevm.ops.access import connect, require_target, wait_for_ssh

    if vm.spec.ssh is True:
        connect(require_target(svc, vm.metadata.uid), timeout)
    else:  # the user's own public key: we cannot log in, sshd's banner has to do
        wait_for_ssh(require_target(svc, vm.metadata.uid, any_key=True), timeout)


def _preflight(plan: LaunchPlan, ignored: frozenset[str]) -> LaunchPlan:
    """Check the host for ``plan``; the plan to run (an ignored Jail check: unjailed)."""
    from dataclasses import replace

    from ignitevm.ops.preflight import Check, StartRequest, require_preflight
    from ignitevm.vmm.base import Accel

    req = StartRequest(plan.vmm, plan.network, plan.machine.vmlinux, Accel(plan.machine.accel),
                       ports=plan.ports, jail=plan.jail)  # fmt: skip
    require_preflight(req, ignored)
    if plan.jail and ({"all", Check.JAIL.value} & ignored):
        log.warning("the Jail check is ignored: this VM's QEMU runs unjailed, as root")
        return replace(plan, jail=False)
    return plan
