"""``python -m ignitevm.spawn VM_DIR [--ready-fd N] [--foreground]``: the per-VM supervisor.

Without ``--foreground`` it forks once and the parent exits, so the launching process never has
to reap it (a long-lived caller such as ignited would otherwise collect zombies)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from ignitevm.errors import ConflictError
from ignitevm.network.registry import require_plugin
from ignitevm.spawn.plan import read_plan
from ignitevm.spawn.protocol import Ready
from ignitevm.spawn.supervisor import Supervisor
from ignitevm.store.locks import try_hold_lock
from ignitevm.vmm.driver import driver_for

# A cleanup_stale or is_running probe may hold the lock for a moment.
LOCK_WAIT = 5.0


def _parse(argv: list[str]) -> tuple[Path, int | None, bool]:
    vm_dir: Path | None = None
    ready_fd: int | None = None
    foreground = False
    args = iter(argv)
    for arg in args:
        if arg == "--ready-fd":
            ready_fd = int(next(args))
        elif arg == "--foreground":
            foreground = True
        else:
            vm_dir = Path(arg)
    if vm_dir is None:
        raise SystemExit("usage: python -m ignitevm.spawn VM_DIR [--ready-fd N] [--foreground]")
    return vm_dir.resolve(), ready_fd, foreground


def main(argv: list[str]) -> int:
    vm_dir, ready_fd, foreground = _parse(argv)
    if not foreground and os.fork() != 0:
        os._exit(0)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if os.environ.get("IGNITE_SPAWN_DEBUG") else logging.INFO,
        format="%(asctime)s supervisor[%(process)d] %(levelname)s %(message)s",
    )
    ready = Ready(ready_fd)
    os.chdir(vm_dir)  # QEMU's sockets may be relative to it; pid_in_dir() checks it
    lock_fd = try_hold_lock(vm_dir, wait=LOCK_WAIT)
    if lock_fd is None:
        ready.error(
            ConflictError(
                f"the VM in {vm_dir} is already running",
                hint="stop it first, or attach to it",
            )
        )
        return 1
    try:
        plan = read_plan(vm_dir)
        driver = driver_for(plan.vmm, vm_dir)
        plugin = require_plugin(plan.network)
    except Exception as exc:
        ready.error(exc)
        return 1
    # The lock fd stays open (it is close-on-exec, so QEMU does not inherit it) until exit.
    return Supervisor(plan, ready, driver, plugin).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
