"""`ignite logs` (the serial console, -f follows) and `ignite attach`."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from ignitevm.errors import IgniteError
from ignitevm.layout import VMFiles
from ignitevm.ops.services import Services
from ignitevm.ops.vmlist import require_vm, vm_dir


def stream_logs(svc: Services, query: str, *, follow: bool = False) -> Iterator[bytes]:
    """The console log's bytes (its rotated part first); with ``follow``, new output until the
    VM stops."""
    from ignitevm.spawn import ConsoleFollower, is_running

    vm = require_vm(svc, query)
    d = vm_dir(svc, vm)
    path = d / VMFiles.CONSOLE
    if not path.exists() and not follow:
        raise IgniteError(
            f"VM {vm.metadata.name} has no console log yet",
            hint=f"start it: ignite start {vm.metadata.name}",
        )
    if not os.access(path, os.R_OK) and path.exists():
        # 0600: what the guest printed is guest data (docs/architecture.md "State directory")
        raise IgniteError(
            f"the console of VM {vm.metadata.name} is readable by root only",
            hint=f"run it as root: sudo ignite logs {vm.metadata.name}",
        )
    rotated = path.with_name(path.name + ".1")
    if rotated.exists():
        yield rotated.read_bytes()
    follower = ConsoleFollower(path)
    while True:
        alive = is_running(d)  # before reading, so the last output is not missed
        if chunk := follower.read_new():
            yield chunk
        if not follow or not alive:
            return
        time.sleep(0.1)


def attach_console(svc: Services, query: str, stdin_fd: int, stdout_fd: int) -> None:
    from ignitevm.spawn import attach, is_running

    vm = require_vm(svc, query)
    d = vm_dir(svc, vm)
    if not is_running(d):
        raise IgniteError(
            f"VM {vm.metadata.name} is not running",
            hint=f"start it: ignite start {vm.metadata.name}",
        )
    attach(d, stdin_fd, stdout_fd)
