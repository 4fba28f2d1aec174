"""The supervisor's control socket (``vm_dir/control.sock``, root only): requests for the
running VM that only its supervisor may carry out, because it holds the VMM and its RAM:
pause, unpause, save (a snapshot, or a suspend). One JSON line in, one out (docs/runtime.md).
The client side is ``spawn/client/control.py``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
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
        vm_dir: Path,
    ) -> None:
        self.vm_dir = vm_dir
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
            return self._save(req)
        raise IgniteError(f"unknown control request {op!r}")

    def _save(self, req: dict[str, Any]) -> dict[str, Any]:
        """Save the machine (docs/snapshots.md). With ``freeze``: the disk's current layer
        ``top`` gets a second name ``keep`` first (the snapshot's layer), the new layer
        ``freeze`` goes over it in the VMM and then takes the name ``top``. ``done`` is made
        last: a snapshot without it is undone by whoever finds it (ops/snapshots.py)."""
        from ignitevm.layout import VMFiles
        from ignitevm.store.locks import file_lock

        with file_lock(self.vm_dir / VMFiles.SAVE_LOCK):  # finish_pending waits it out
            return self._save_locked(req)

    def _save_locked(self, req: dict[str, Any]) -> dict[str, Any]:
        freeze = Path(req["freeze"]) if req.get("freeze") else None
        if freeze is not None:
            os.link(req["top"], req["keep"])
        save = SaveRequest(Path(req["state"]), Path(req["memory"]), freeze, bool(req.get("stop")))
        if save.stop:
            self.on_state("suspended")  # the VMM quits: the loop ends as for a stop
        try:
            result = self.driver.save(save)
        except BaseException:
            if save.stop:  # not saved: the VM runs on (driver.save resumed it)
                self.on_state("running")
            raise
        if freeze is not None:
            os.replace(freeze, req["top"])
        if req.get("done"):
            Path(req["done"]).touch()
        return {
            "ok": True,
            "paused_seconds": result.paused_seconds,
            "state_bytes": result.state_bytes,
            "memory_bytes": result.memory_bytes,
        }

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
