"""Reading a VM's console from outside: following console.log, waiting for the boot marker."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ignitevm.errors import IgniteError, Timeout
from ignitevm.layout import VMFiles
from ignitevm.spawn.runtime import is_running


def tail_lines(path: Path, count: int = 20, max_bytes: int = 16384) -> list[str]:
    """The last ``count`` lines of a text file (empty when it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            data = f.read()
    except OSError:
        return []
    text = data.decode(errors="replace").replace("\r", "")
    return text.splitlines()[-count:]


class ConsoleFollower:
    """Reads what was appended to console.log since the last call, across its rotation to
    console.log.1 (the end of the old file is read first) and across a restart (truncation).
    ``ConsoleFollower(vm_dir / VMFiles.CONSOLE).read_new()``: for ``ignite logs -f`` too."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.old = path.with_name(path.name + ".1")
        self.inode: int | None = None
        self.offset = 0

    def read_new(self) -> bytes:
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                rest = b""
                if st.st_ino != self.inode or st.st_size < self.offset:
                    rest = self._rest_of_rotated()
                    self.inode, self.offset = st.st_ino, 0
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return b""
        self.offset += len(data)
        return rest + data

    def _rest_of_rotated(self) -> bytes:
        if self.inode is None:
            return b""
        try:
            with open(self.old, "rb") as f:
                if os.fstat(f.fileno()).st_ino != self.inode:
                    return b""
                f.seek(self.offset)
                return f.read()
        except FileNotFoundError:
            return b""


def wait_for_boot(vm_dir: Path, marker: str, timeout: float) -> None:
    """Follow console.log until ``marker`` appears. Raises IgniteError with the console's last
    lines when the VM stops first or ``timeout`` passes."""
    needle = marker.encode()
    deadline = time.monotonic() + timeout
    follower = ConsoleFollower(vm_dir / VMFiles.CONSOLE)
    tail = b""
    while True:
        alive = is_running(vm_dir)  # read before the file, so a final write is not missed
        window = tail + follower.read_new()
        if needle in window:
            return
        tail = window[-len(needle) :]
        if not alive:
            _boot_failed(vm_dir, f"the VM stopped before it booted (no {marker!r} on its console)")
        if time.monotonic() > deadline:
            _boot_failed(vm_dir, f"the VM did not boot in {timeout:g} s (no {marker!r} yet)",
                         timed_out=True)  # fmt: skip
        time.sleep(0.02)


def _boot_failed(vm_dir: Path, message: str, *, timed_out: bool = False) -> None:
    lines = tail_lines(vm_dir / VMFiles.CONSOLE, 20)
    console = "\n  ".join(lines) if lines else "(the console is empty)"
    raise (Timeout if timed_out else IgniteError)(
        f"{message}; console.log ends with:\n  {console}",
        hint=f"see {vm_dir / VMFiles.CONSOLE} and {vm_dir / VMFiles.SUPERVISOR_LOG}",
    )
