"""VMs as they are: the stored objects with the truth about "running" overlaid
(docs/architecture.md "State and truth"). The one mapping of a supervisor's runtime record onto
``VM.status``, for what ps/inspect show and for what start/stop record."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ignitevm.api import VM, Kind
from ignitevm.api.types import LastRun, Runtime, Vmm
from ignitevm.ops.services import Services

if TYPE_CHECKING:
    from ignitevm.spawn.runtime import RuntimeStatus


@dataclass(frozen=True)
class VMView:
    vm: VM  # status.running, start_time and ip addresses reflect the live state
    running: bool
    ports: tuple[str, ...] = ()  # published ports as they are (e.g. "0.0.0.0:2222->22/tcp")
    damaged: bool = False  # its metadata.json cannot be read: only the uid is known


def vm_dir(svc: Services, vm: VM) -> Path:
    return svc.store.object_dir(Kind.VM, vm.metadata.uid)


def require_vm(svc: Services, query: str) -> VM:
    """The VM a name or uid prefix names; NotFoundError / AmbiguousError otherwise."""
    return svc.store.require(Kind.VM, query)


def apply_runtime(vm: VM, status: RuntimeStatus | None) -> VM:
    """Write a run's live state (None: not running) into ``vm.status``; returns ``vm``."""
    st = vm.status
    st.running = status is not None
    if status is None:
        st.network.ip_addresses = []
        st.pid = None
        return vm
    st.start_time = datetime.fromtimestamp(status.started_at, UTC)
    st.network.ip_addresses = list(status.ip_addresses)
    st.network.plugin = status.network
    st.pid = status.supervisor_pid
    st.runtime = Runtime(id=str(status.supervisor_pid))
    st.vmm = Vmm(status.vmm)
    return vm


def live_view(svc: Services, vm: VM) -> VMView:
    """Overlay the supervisor's live state on the stored object: a dead VM is never running,
    and says how its last run ended."""
    from ignitevm.spawn.runtime import is_running, runtime_status

    d = vm_dir(svc, vm)
    status = runtime_status(d)
    apply_runtime(vm, status)
    # the lock is the truth: a run whose runtime.json is damaged still runs
    running = status is not None or is_running(d)
    vm.status.running = running
    vm.status.last_run = None if running else last_run(d)
    vm.status.paused = True if status is not None and status.state == "paused" else None
    if not running:
        from ignitevm.spawn.runtime import is_suspended

        vm.status.suspended = True if is_suspended(d) else None
    ports = status.ports if status is not None else vm.spec.network.ports
    return VMView(vm=vm, running=running, ports=tuple(str(p) for p in ports))


def last_run(d: Path) -> LastRun | None:
    """How the VM's last run ended: a runtime.json nobody holds is a run whose supervisor
    vanished (kill -9, a host reboot), not yet cleaned up; else the run's own record."""
    from ignitevm.spawn.runtime import LastRun as Record
    from ignitevm.spawn.runtime import RunOutcome, read_last_run, read_runtime

    stale = read_runtime(d)
    record = read_last_run(d)
    if stale is not None and (record is None or record.started_at != stale.started_at):
        record = Record(RunOutcome.LOST, stale.started_at)
    if record is None:
        return None
    return LastRun(
        outcome=str(record.outcome),
        exit_code=record.exit_code,
        started_at=datetime.fromtimestamp(record.started_at, UTC),
        ended_at=datetime.fromtimestamp(record.ended_at, UTC) if record.ended_at else None,
    )


def list_vms(svc: Services, *, all_: bool = True) -> list[VMView]:
    """Every VM as it is; a damaged one (metadata.json unreadable) too, known by its uid."""
    from ignitevm.api import ObjectMeta
    from ignitevm.spawn.runtime import is_running

    views = [live_view(svc, vm) for vm in svc.store.list(Kind.VM)]
    for uid in svc.store.damaged(Kind.VM):
        running = is_running(svc.store.object_dir(Kind.VM, uid))
        vm = VM(metadata=ObjectMeta(uid=uid))
        vm.status.running = running
        views.append(VMView(vm=vm, running=running, damaged=True))
    return views if all_ else [v for v in views if v.running]


def get_vm(svc: Services, query: str) -> VMView:
    return live_view(svc, require_vm(svc, query))


def record_state(svc: Services, vm: VM, status: RuntimeStatus | None) -> VM:
    """Store what ``status`` says of the VM's run (after a start or a stop)."""
    return svc.store.update(
        Kind.VM, vm.metadata.uid, lambda current: apply_runtime(current, status)
    )
