"""A minimal QMP client (QEMU Machine Protocol) over a unix socket."""

from __future__ import annotations

import array
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from ignitevm.errors import IgniteError
from ignitevm.fsutil import unix_socket_address


class QMPError(IgniteError):
    """QMP could not be reached, timed out, or QEMU answered a command with an error."""


def connect_unix(path: Path, timeout: float) -> socket.socket:
    """Connect to a unix socket, also when its path is longer than sun_path allows: the
    directory is then reached through ``/proc/self/fd``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        with unix_socket_address(path) as address:
            sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def listen_unix(path: Path, backlog: int = 8) -> socket.socket:
    """Listen on a unix socket at ``path`` (mode 0600); a path longer than sun_path allows is
    bound through ``/proc/self/fd/<dirfd>``, as ``connect_unix`` reaches it."""
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with unix_socket_address(path) as address:
            sock.bind(address)
        os.chmod(path, 0o600)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


class QMPClient:
    """``with QMPClient(path) as qmp: qmp.execute("system_powerdown")``.

    QEMU serves one QMP client at a time, so connections are meant to be short."""

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""
        self.greeting: dict[str, Any] = {}

    def __enter__(self) -> QMPClient:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def connect(self) -> None:
        """Connect, read the greeting and leave capabilities negotiation mode."""
        try:
            self._sock = connect_unix(self.path, self.timeout)
        except OSError as exc:
            raise QMPError(
                f"cannot connect to QMP at {self.path}: {exc.strerror or exc}",
                hint="is the VM running?",
            ) from exc
        deadline = time.monotonic() + self.timeout
        greeting = self._read_message(deadline)
        if "QMP" not in greeting:
            raise QMPError(f"unexpected QMP greeting from {self.path}: {greeting}")
        self.greeting = greeting["QMP"]
        self.execute("qmp_capabilities")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def execute(
        self, command: str, arguments: dict[str, Any] | None = None, *, fd: int | None = None
    ) -> Any:
        """Run ``command`` and return its ``return`` value; events in between are skipped.
        ``fd`` goes along (SCM_RIGHTS), for ``getfd`` and ``add-fd``."""
        if self._sock is None:
            raise QMPError("QMP client is not connected")
        msg: dict[str, Any] = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        deadline = time.monotonic() + self.timeout
        data = json.dumps(msg).encode() + b"\n"
        try:
            if fd is None:
                self._sock.sendall(data)
            else:
                fds = array.array("i", [fd])
                self._sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        except OSError as exc:
            raise QMPError(f"QMP {command}: {exc}") from exc
        while True:
            reply = self._read_message(deadline)
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                err = reply["error"]
                raise QMPError(f"QMP {command} failed: {err.get('desc', err)}")

    def _read_message(self, deadline: float) -> dict[str, Any]:
        assert self._sock is not None
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise QMPError(f"QMP at {self.path} did not answer in {self.timeout:g} s")
            self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                raise QMPError(f"QMP at {self.path}: {exc}") from exc
            if not chunk:
                raise QMPError(f"QMP at {self.path} closed the connection")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        try:
            msg = json.loads(line)
        except ValueError as exc:
            raise QMPError(f"QMP at {self.path} sent invalid JSON: {line[:200]!r}") from exc
        if not isinstance(msg, dict):
            raise QMPError(f"QMP at {self.path} sent {msg!r}")
        return msg
