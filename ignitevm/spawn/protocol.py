"""What the supervisor and its clients agree on: the ready pipe and the power-button rhythm.

``launch`` passes the supervisor the write end of a pipe; the supervisor writes one JSON line,
``{"ok": true, "pid": P, "vmm_pid": Q}`` once the VMM runs or ``{"ok": false, "error": ...,
"hint": ...}``, and closes it. End of file without a line: it died before it could say."""

from __future__ import annotations

import contextlib
import json
import os
import select
import time
from typing import Any

from ignitevm.errors import IgniteError

# A press before the guest's acpid listens (just after boot) is lost: press again this often.
REPRESS_INTERVAL = 3.0


class Ready:
    """The supervisor's end: tells the launching process that the VM started, or why not."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def _send(self, msg: dict[str, Any]) -> None:
        if self._fd is None:
            return
        # An OSError means the launcher gave up waiting; the supervisor carries on.
        with contextlib.suppress(OSError):
            os.write(self._fd, json.dumps(msg).encode() + b"\n")
        os.close(self._fd)
        self._fd = None

    def ok(self, vmm_pid: int) -> None:
        self._send({"ok": True, "pid": os.getpid(), "vmm_pid": vmm_pid})

    def error(self, exc: BaseException) -> None:
        hint = exc.hint if isinstance(exc, IgniteError) else None
        self._send({"ok": False, "error": str(exc), "hint": hint})


def read_ready(fd: int, timeout: float) -> dict[str, Any] | None:
    """The launcher's end: the supervisor's message, None when it exited without one."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise IgniteError(
                f"the supervisor did not report in {timeout:g} s", hint="see supervisor.log"
            )
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    if not data.strip():
        return None
    try:
        result = json.loads(data.splitlines()[0])
    except ValueError:
        return None
    return result if isinstance(result, dict) else None
