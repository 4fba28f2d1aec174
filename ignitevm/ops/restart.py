"""Restart policies (``--restart``, ``spec.restartPolicy``): which VMs that do not run should run
again, and starting them (docs/gitops.md "Restart policies"). ignited acts on them; Ignite's
users lost their VMs at every host reboot (weaveworks/ignite #351, #504).

- ``always``: whenever the VM does not run, unless a person stopped it (``ignite stop``/
  ``kill`` record ``status.stoppedByUser``; ``ignite start`` clears it). Docker calls this
  ``unless-stopped``.
- ``on-failure``: only when its last run ended abnormally: the VMM crashed or was killed, its
  supervisor vanished (kill -9, a host crash) or was told to stop by a signal (a host shutdown).
  Not after the guest powered off, nor after a stop by a person.
- ``no`` (the default): never.

A VM suspended with ``ignite suspend`` is never restarted: that is a person's stop too.
"""

from __future__ import annotations

import logging

from ignitevm.api import VM, RestartPolicy
from ignitevm.ops.services import Services

log = logging.getLogger(__name__)

# spawn/runtime.RunOutcome values: not the guest's own poweroff ("exited"); "terminated" is a
# supervisor told to stop by a signal, as at a host shutdown (a person's stop is marked apart)
ABNORMAL = frozenset({"crashed", "lost", "terminated"})


def restart_reason(vm: VM, *, running: bool) -> str | None:
    """Why ``vm`` (as ``live_view`` shows it: ``status.lastRun`` filled in) should be started
    again by its policy, or None."""
    policy = vm.spec.restart_policy or RestartPolicy.NO
    if running or policy == RestartPolicy.NO or vm.status.stopped_by_user:
        return None
    last = vm.status.last_run
    if last is not None and last.outcome == "suspended":
        return None  # `ignite suspend` is a person's stop too; `ignite start` resumes it
    if policy == RestartPolicy.ALWAYS:
        return f"restart policy always, last run {last.outcome if last else 'none'}"
    if last is not None and last.outcome in ABNORMAL:
        return f"restart policy on-failure, last run {last.outcome}"
    return None


def restart_vm(svc: Services, uid: str, **start_options: object) -> VM:
    """Start the VM again as its policy says; refused (ConflictError) when a person stopped it
    in the meantime (checked again under the start lock)."""
    from ignitevm.ops.start import start_vm

    return start_vm(svc, uid, unless_stopped_by_user=True, **start_options)  # type: ignore[arg-type]


def reap_dead_runs(svc: Services) -> int:
    """Undo what runs whose supervisor vanished left (their network: netns, addresses, rules;
    their files) for every VM, as ignited does on each pass: after a host reboot that happens
    at once, not only at each VM's next start or rm. The run is recorded as lost first. A VM
    being started is left to its start. Returns how many were cleaned."""
    from ignitevm import spawn
    from ignitevm.api import Kind
    from ignitevm.errors import ConflictError, IgniteError
    from ignitevm.ops.start import starting
    from ignitevm.ops.vmlist import vm_dir
    from ignitevm.spawn.runtime import read_runtime

    cleaned = 0
    for vm in svc.store.list(Kind.VM):
        d = vm_dir(svc, vm)
        if read_runtime(d) is None or spawn.is_running(d):
            continue
        try:
            with starting(vm, d):
                spawn.cleanup_stale(d)
            cleaned += 1
        except ConflictError:
            continue  # being started: its start cleans up
        except IgniteError as exc:
            log.warning("cannot clean up the dead run of VM %s: %s", vm.metadata.name, exc)
    return cleaned
