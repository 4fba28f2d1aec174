"""What the supervisor and its clients agree on: the ready pipe and the power-button rhythm.

``launch`` passes the supervisor the write end of a pipe; the supervisor writes one JSON line,
``{"ok": true, "pid": P, "vmm_pid": Q}`` once the VMM runs or ``{"ok": false, "error": ...,
"hint": ...}``, and closes it. End of file without a line: it died before it could say.
Before that it may write ``{"ok": true, "pid": P, "waiting": WHAT, "timeout": S}`` (once): it
waits up to S seconds for something only the user can do (the interfaces of a multinet VM,
network/multinet.py); a launcher that does not wait for the boot may return then."""

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
        self._waiting_sent = False

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

    def waiting(self, what: str, timeout: float) -> None:
        """Say once, without closing, that the start waits up to ``timeout`` s for ``what``."""
        if self._fd is None or self._waiting_sent:
            return
        self._waiting_sent = True
        msg = {"ok": True, "pid": os.getpid(), "waiting": what, "timeout": timeout}
        with contextlib.suppress(OSError):
            os.write(self._fd, json.dumps(msg).encode() + b"\n")

    def error(self, exc: BaseException) -> None:
        hint = exc.hint if isinstance(exc, IgniteError) else None
        self._send({"ok": False, "error": str(exc), "hint": hint})


def read_ready(fd: int, timeout: float, *, early: bool = False) -> dict[str, Any] | None:
    """The launcher's end: the supervisor's final message, None when it exited without one.
    A "waiting" message is returned when ``early``; else it extends the deadline by its
    timeout and the final message is awaited."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        while b"\n" in data:
            line, data = data.split(b"\n", 1)
            msg = _parse(line)
            if msg is None or "waiting" not in msg:
                return msg
            if early:
                return msg
            deadline += float(msg.get("timeout") or 0)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise IgniteError(
                f"the supervisor did not report in {timeout:g} s", hint="see supervisor.log"
            )
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                return _parse(data) if data.strip() else None
            data += chunk


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        result = json.loads(line)
    except ValueError:
        return None
    return result if isinstance(result, dict) else None
