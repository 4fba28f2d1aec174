"""VMs as they are: the stored objects with the truth about "running" overlaid (DESIGN.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ignitevm.api import VM, Kind
from ignitevm.ops.services import Services
from ignitevm.ops.vmfiles import vm_dir


@dataclass(frozen=True)
class VMView:
    vm: VM  # status.running, start_time and ip addresses reflect the live state
    running: bool
    ports: tuple[str, ...] = ()  # published ports as they are (e.g. "0.0.0.0:2222->22/tcp")


def live_view(svc: Services, vm: VM) -> VMView:
    """Overlay the supervisor's live state on the stored object: a dead VM is never running."""
    from ignitevm.spawn.runtime import runtime_status

    status = runtime_status(vm_dir(svc, vm))
    vm.status.running = status is not None
    if status is None:
        vm.status.network.ip_addresses = []
        vm.status.pid = None
    else:
        vm.status.start_time = datetime.fromtimestamp(status.started_at, UTC)
        vm.status.network.ip_addresses = list(status.ip_addresses)
        vm.status.pid = status.supervisor_pid
    if status is None:
        return VMView(vm=vm, running=False, ports=tuple(str(p) for p in vm.spec.network.ports))
    return VMView(vm=vm, running=True, ports=tuple(str(p) for p in status.ports))


def list_vms(svc: Services, *, all_: bool = True) -> list[VMView]:
    views = [live_view(svc, vm) for vm in svc.store.list(Kind.VM)]
    return views if all_ else [v for v in views if v.running]


def get_vm(svc: Services, query: str) -> VMView:
    return live_view(svc, svc.store.require(Kind.VM, query))
