"""Serial console plumbing: the capped console.log and the attach socket's clients."""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
from pathlib import Path
from typing import BinaryIO

from ignitevm.fsutil import PRIVATE_MODE, create_file, unix_socket_address

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

    def __len__(self) -> int:
        return len(self._out)

    def add(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._out[sock] = bytearray()
        self._sel.register(sock, selectors.EVENT_READ, ("client", sock))

    def drop(self, sock: socket.socket) -> None:
        if self._out.pop(sock, None) is not None:
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
        self._sel.modify(sock, events, ("client", sock))

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


def listen_unix(path: Path) -> socket.socket:
    """Listen on a unix socket at ``path``; a path longer than sun_path allows is bound
    through ``/proc/self/fd/<dirfd>``, as clients connect to it (vmm.qmp.connect_unix)."""
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with unix_socket_address(path) as address:
            sock.bind(address)
    except BaseException:
        sock.close()
        raise
    os.chmod(path, 0o600)
    sock.listen(8)
    sock.setblocking(False)
    return sock
