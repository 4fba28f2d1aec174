"""`ignite logs` (the serial console, -f follows) and `ignite attach`."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from ignitevm.api import Kind
from ignitevm.errors import IgniteError
from ignitevm.ops.services import Services
from ignitevm.ops.vmfiles import vm_dir

CONSOLE_FILE = "console.log"


def stream_logs(svc: Services, query: str, *, follow: bool = False) -> Iterator[bytes]:
    """The console log's bytes; with ``follow``, new output until the VM stops."""
    from ignitevm.spawn import is_running

    vm = svc.store.require(Kind.VM, query)
    d = vm_dir(svc, vm)
    path = d / CONSOLE_FILE
    if not path.exists() and not follow:
        raise IgniteError(
            f"VM {vm.metadata.name} has no console log yet",
            hint=f"start it: ignite start {vm.metadata.name}",
        )
    offset, inode = 0, None
    while True:
        alive = is_running(d)
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                if st.st_ino != inode or st.st_size < offset:  # rotated, or a new start
                    inode, offset = st.st_ino, 0
                f.seek(offset)
                while chunk := f.read(1 << 16):
                    offset += len(chunk)
                    yield chunk
        except FileNotFoundError:
            pass
        if not follow or not alive:
            return
        time.sleep(0.1)


def attach_console(svc: Services, query: str, stdin_fd: int, stdout_fd: int) -> None:
    from ignitevm.spawn import attach, is_running

    vm = svc.store.require(Kind.VM, query)
    d = vm_dir(svc, vm)
    if not is_running(d):
        raise IgniteError(
            f"VM {vm.metadata.name} is not running",
            hint=f"start it: ignite start {vm.metadata.name}",
        )
    attach(d, stdin_fd, stdout_fd)
