"""`ignite start`: launch the VM's supervisor with its plan, wait for the guest to boot."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ignitevm.api import VM
from ignitevm.errors import ConflictError, IgniteError
from ignitevm.ops.services import Services
from ignitevm.ops.vmlist import record_state, require_vm, vm_dir

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
) -> VM:
    """Start a created or stopped VM; returns when its init runs (``wait``). ``vmm``
    overrides the VM's choice for this start; ``ignore_preflight`` names checks to skip."""
    from ignitevm import spawn
    from ignitevm.network.registry import require_plugin
    from ignitevm.ops.launchplan import build_launch_plan

    vm = require_vm(svc, query)
    d = vm_dir(svc, vm)
    if spawn.is_running(d):
        raise ConflictError(
            f"VM {vm.metadata.name} is already running",
            hint=f"stop it first: ignite stop {vm.metadata.name}",
        )
    # the previous run's leftovers go with the plugin that made them, whatever this start uses
    spawn.cleanup_stale(d)
    plugin_name = network_plugin or vm.status.network.plugin or svc.default_network_plugin()
    require_plugin(plugin_name)  # an unknown name fails here, naming the choices
    plan = build_launch_plan(svc, vm, d, plugin_name, debug=debug, vmm=vmm)
    _preflight(plan, ignore_preflight)
    started = time.monotonic()
    spawn.launch(plan)
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


def _wait_for_ssh(svc: Services, vm: VM, timeout: float) -> None:
    """With --ssh, "booted" means sshd answers (ignite run returns ready for ignite exec);
    with a key of ours, that a login works: the VM's shared connection is then open."""
    from ignitevm.ops.access import connect, require_target, wait_for_ssh

    if vm.spec.ssh is True:
        connect(require_target(svc, vm.metadata.uid), timeout)
    else:  # the user's own public key: we cannot log in, sshd's banner has to do
        wait_for_ssh(require_target(svc, vm.metadata.uid, any_key=True), timeout)


def _preflight(plan: LaunchPlan, ignored: frozenset[str]) -> None:
    from ignitevm.ops.preflight import StartRequest, require_preflight
    from ignitevm.vmm.base import Accel

    req = StartRequest(
        plan.vmm, plan.network, plan.machine.vmlinux, Accel(plan.machine.accel), plan.ports
    )
    require_preflight(req, ignored)
