"""Serial console plumbing: the capped console.log and the attach socket's clients."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import selectors
import socket
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ignitevm.fsutil import PRIVATE_MODE, create_file
from ignitevm.vmm.qmp import listen_unix

log = logging.getLogger(__name__)

# A client that does not read this much backlog is disconnected rather than slowing the VM.
MAX_CLIENT_BACKLOG = 1 << 20
# Input queued for the VM's serial port while the guest does not read it.
MAX_INPUT_BACKLOG = 64 << 10


class ConsoleLog:
    """Append-only log capped at about ``limit`` bytes: when full it becomes ``<name>.1``
    (replacing the older one), so at most ~2 x limit is on disk and the last ``limit`` kept."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = max(limit, 4096)
        self.old = path.with_name(path.name + ".1")
        self.old.unlink(missing_ok=True)
        self._file: BinaryIO = _create_private(path)
        self._size = 0

    def write(self, data: bytes) -> None:
        if self._size + len(data) > self.limit and self._size > 0:
            self._rotate()
        self._file.write(data)
        self._size += len(data)

    def _rotate(self) -> None:
        self._file.close()
        os.replace(self.path, self.old)
        self._file = _create_private(self.path)
        self._size = 0

    def close(self) -> None:
        self._file.close()


def _create_private(path: Path) -> BinaryIO:
    """A new, unbuffered console file only root reads: the guest's output is guest data."""
    f: BinaryIO = create_file(path, PRIVATE_MODE, buffering=0)
    return f


class Clients:
    """The attach socket's connected clients: each gets the console output from the moment
    it connects; what they type is queued for the VM's serial input."""

    def __init__(self, sel: selectors.BaseSelector) -> None:
        self._sel = sel
        self._out: dict[socket.socket, bytearray] = {}
        self._handlers: dict[socket.socket, Callable[[int], None]] = {}

    def __len__(self) -> int:
        return len(self._out)

    def add(self, sock: socket.socket, handler: Callable[[socket.socket, int], None]) -> None:
        """Register ``sock``; its events go to ``handler(sock, events)``."""
        sock.setblocking(False)
        self._out[sock] = bytearray()
        self._handlers[sock] = functools.partial(handler, sock)
        self._sel.register(sock, selectors.EVENT_READ, self._handlers[sock])

    def drop(self, sock: socket.socket) -> None:
        if self._out.pop(sock, None) is not None:
            self._handlers.pop(sock, None)
            self._sel.unregister(sock)
            sock.close()

    def close_all(self) -> None:
        for sock in list(self._out):
            self._flush_best_effort(sock)
            self.drop(sock)

    def broadcast(self, data: bytes) -> None:
        for sock in list(self._out):
            self._out[sock] += data
            self.flush(sock)

    def flush(self, sock: socket.socket) -> None:
        """Send what is queued for ``sock``; wait for writability when the socket is full."""
        buf = self._out.get(sock)
        if buf is None:
            return
        try:
            sent = sock.send(buf) if buf else 0
        except BlockingIOError:
            sent = 0
        except OSError:
            self.drop(sock)
            return
        del buf[:sent]
        if len(buf) > MAX_CLIENT_BACKLOG:
            log.warning("attach client is not reading: disconnecting it")
            self.drop(sock)
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if buf else 0)
        self._sel.modify(sock, events, self._handlers[sock])

    def receive(self, sock: socket.socket) -> bytes | None:
        """Read what a client typed; None when it has gone (it is dropped)."""
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return b""
        except OSError:
            data = b""
        if not data:
            self.drop(sock)
            return None
        return data

    def _flush_best_effort(self, sock: socket.socket) -> None:
        buf = self._out.get(sock)
        if buf:
            with contextlib.suppress(OSError):
                sock.send(buf)


def listen_attach(path: Path) -> socket.socket:
    """The attach socket, non-blocking for the supervisor's selector loop."""
    sock = listen_unix(path)
    sock.setblocking(False)
    return sock


class ConsoleRelay:
    """The serial console of a running VMM: its stdout to console.log and to every attach
    client, what clients type to its stdin (queued, 64 KiB at most)."""

    def __init__(self, sel: selectors.BaseSelector, log_file: ConsoleLog, listener: socket.socket):
        self.sel = sel
        self.log = log_file
        self.listener = listener
        self.clients = Clients(sel)
        self.to_vmm = bytearray()
        self.out_fd = self.in_fd = -1
        self.vmm_gone = False
        sel.register(listener, selectors.EVENT_READ, self._accept)

    def watch(self, stdout_fd: int, stdin_fd: int) -> None:
        self.out_fd, self.in_fd = stdout_fd, stdin_fd
        self.sel.register(stdout_fd, selectors.EVENT_READ, self._on_output)

    def _on_output(self, events: int) -> None:
        try:
            data = os.read(self.out_fd, 65536)
        except BlockingIOError:
            return
        if not data:  # the VMM closed its stdout: it has exited
            self.sel.unregister(self.out_fd)
            self.vmm_gone = True
            return
        self.log.write(data)
        self.clients.broadcast(data)

    def drain(self) -> None:
        """What the VMM wrote before it exited."""
        while True:
            try:
                data = os.read(self.out_fd, 65536)
            except OSError:
                return
            if not data:
                return
            self.log.write(data)
            self.clients.broadcast(data)

    def _accept(self, events: int) -> None:
        try:
            sock, _ = self.listener.accept()
        except BlockingIOError:
            return
        self.clients.add(sock, self._on_client)
        log.info("attach client connected (%d)", len(self.clients))

    def _on_client(self, sock: socket.socket, events: int) -> None:
        if events & selectors.EVENT_WRITE:
            self.clients.flush(sock)
        if events & selectors.EVENT_READ:
            data = self.clients.receive(sock)
            if data:
                self.to_vmm += data[: MAX_INPUT_BACKLOG - len(self.to_vmm)]
                self._flush_input(0)

    def _flush_input(self, events: int) -> None:
        try:
            n = os.write(self.in_fd, self.to_vmm) if self.to_vmm else 0
        except BlockingIOError:
            n = 0
        except OSError:  # the VMM is gone; its stdout's end of file ends the loop
            self.to_vmm.clear()
            n = 0
        del self.to_vmm[:n]
        registered = self.in_fd in self.sel.get_map()
        if self.to_vmm and not registered:
            self.sel.register(self.in_fd, selectors.EVENT_WRITE, self._flush_input)
        elif not self.to_vmm and registered:
            self.sel.unregister(self.in_fd)

    def close(self) -> None:
        self.clients.close_all()
        self.listener.close()
        self.log.close()
