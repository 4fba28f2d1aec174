"""`ignite fork VM -n COUNT`: a snapshot of a running VM and COUNT new VMs resumed from it,
started in parallel (docs/snapshots.md "Fork").

The first fork loads the snapshot's memory into a sealed memfd; the others start once it runs
and map that same memfd, so the pages none of them wrote are in host memory once.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ignitevm.api import VM, Kind
from ignitevm.api.names import name_problem
from ignitevm.api.snapshot import Snapshot
from ignitevm.errors import IgniteError, ValidationError
from ignitevm.ops.services import Services

log = logging.getLogger(__name__)

MAX_FORKS = 64


@dataclass
class ForkResult:
    snapshot: Snapshot
    vms: list[VM] = field(default_factory=list)
    failed: list[tuple[str, IgniteError]] = field(default_factory=list)


def fork_names(existing: set[str], prefix: str, count: int) -> list[str]:
    """``count`` free names ``<prefix><n>``, n counting up from 1 past the taken ones."""
    names: list[str] = []
    n = 0
    while len(names) < count:
        n += 1
        name = f"{prefix}{n}"
        if name not in existing:
            names.append(name)
    for name in names:
        problem = name_problem(name)
        if problem is not None:
            raise ValidationError(f"--name-prefix {prefix!r} makes the name {name!r}: {problem}",
                                  hint="use a prefix of letters, digits and '-'")  # fmt: skip
    return names


def fork_vm(
    svc: Services,
    query: str,
    count: int = 1,
    *,
    name_prefix: str | None = None,
    network_plugin: str | None = None,
    timeout: float = 60.0,
) -> ForkResult:
    """Snapshot the running VM ``query``, then create and start ``count`` VMs from it."""
    from ignitevm.ops.create import create_vm
    from ignitevm.ops.request import build_vm
    from ignitevm.ops.snapshots import create_snapshot
    from ignitevm.ops.vmlist import require_vm

    if not 1 <= count <= MAX_FORKS:
        raise ValidationError(f"-n {count}: a fork makes 1 to {MAX_FORKS} VMs",
                              hint="pass -n COUNT within that range")  # fmt: skip
    source = require_vm(svc, query)
    prefix = name_prefix if name_prefix is not None else f"{source.metadata.name}-"
    names = fork_names({v.metadata.name for v in svc.store.list(Kind.VM)}, prefix, count)
    snap, _ = create_snapshot(svc, source.metadata.uid)
    result = ForkResult(snap)
    created: list[VM] = []
    for name in names:
        settings = {"snapshot": snap.metadata.uid, "name": name,
                    "network_plugin": network_plugin}  # fmt: skip
        created.append(create_vm(svc, build_vm(svc, settings)))
    _start_all(svc, created, result, timeout)
    return result


def _start_all(svc: Services, vms: list[VM], result: ForkResult, timeout: float) -> None:
    """The first alone (its memfd is then there to share), the rest in parallel."""
    from ignitevm.ops.start import start_vm

    def start(vm: VM) -> VM | IgniteError:
        try:
            return start_vm(svc, vm.metadata.uid, timeout=timeout)
        except IgniteError as exc:
            log.error("fork %s did not start: %s", vm.metadata.name, exc)
            return exc

    outcomes = [start(vms[0])]
    if len(vms) > 1:
        with ThreadPoolExecutor(max_workers=min(8, len(vms) - 1)) as pool:
            outcomes += list(pool.map(start, vms[1:]))
    for vm, outcome in zip(vms, outcomes, strict=True):
        if isinstance(outcome, IgniteError):
            result.failed.append((vm.metadata.name, outcome))
        else:
            result.vms.append(outcome)
