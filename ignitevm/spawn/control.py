"""The supervisor's control socket (``vm_dir/control.sock``, root only): requests for the
running VM that only its supervisor may carry out, because it holds the VMM and its RAM:
pause, unpause, save (a snapshot, or a suspend). One JSON line in, one out (docs/runtime.md).
The client side is ``spawn/client/control.py``."""

from __future__ import annotations

import contextlib
import json
import logging
import selectors
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ignitevm.errors import IgniteError
from ignitevm.vmm.base import SaveRequest
from ignitevm.vmm.driver import VMMDriver

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 2.0  # a client writes its one line at once


class ControlServer:
    def __init__(
        self,
        sel: selectors.BaseSelector,
        listener: socket.socket,
        driver: VMMDriver,
        on_state: Callable[[str], None],
    ) -> None:
        self.sel = sel
        self.listener = listener
        self.driver = driver
        self.on_state = on_state  # "paused", "running", "suspended": the supervisor records it
        listener.setblocking(False)
        sel.register(listener, selectors.EVENT_READ, self._accept)

    def _accept(self, events: int) -> None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        with conn:
            conn.settimeout(REQUEST_TIMEOUT)
            try:
                reply = self._handle(_read_line(conn))
            except IgniteError as exc:
                reply = {"ok": False, "error": exc.message, "hint": exc.hint}
            except (OSError, ValueError, KeyError, TypeError) as exc:
                reply = {"ok": False, "error": f"bad control request: {exc}", "hint": None}
            with contextlib.suppress(OSError):  # the client gave up; what was done is done
                conn.sendall(json.dumps(reply).encode() + b"\n")

    def _handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req["op"]
        log.info("control: %s", op)
        if op == "pause":
            self.driver.pause()
            self.on_state("paused")
            return {"ok": True}
        if op == "unpause":
            self.driver.unpause()
            self.on_state("running")
            return {"ok": True}
        if op == "save":
            freeze = Path(req["freeze"]) if req.get("freeze") else None
            save = SaveRequest(Path(req["state"]), Path(req["memory"]), freeze,
                               bool(req.get("stop")))  # fmt: skip
            if save.stop:
                self.on_state("suspended")  # the VMM quits: the loop ends as for a stop
            result = self.driver.save(save)
            return {
                "ok": True,
                "paused_seconds": result.paused_seconds,
                "state_bytes": result.state_bytes,
                "memory_bytes": result.memory_bytes,
            }
        raise IgniteError(f"unknown control request {op!r}")

    def close(self) -> None:
        self.sel.unregister(self.listener)
        self.listener.close()


def _read_line(conn: socket.socket) -> dict[str, Any]:
    data = b""
    while b"\n" not in data:
        chunk = conn.recv(4096)
        if not chunk or len(data) > 65536:
            break
        data += chunk
    req = json.loads(data.split(b"\n", 1)[0])
    if not isinstance(req, dict):
        raise ValueError("not an object")
    return req
