"""Talking to the guest agent (docs/internals.md "The guest agent"): one request at a time, one
line each way, answers tagged with the request's id. The supervisor holds the port for the VM's
life and relays one client at a time from ``vm_dir/agent.sock``; the supervisor itself sends
the new identity after a restore.

Everything the agent says comes from the guest and is not trusted: lines are capped in size,
their fields checked, the exit code bounded, and base64 decoded strictly.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ignitevm.errors import IgniteError, Timeout

MAX_LINE = 1 << 16  # the agent sends 32 KiB base64 chunks; a longer line is a hostile guest


class AgentError(IgniteError):
    """The guest agent did not answer, or answered what it should not."""


class AgentTimeout(AgentError, Timeout):
    """The guest agent did not answer in the time given."""


@dataclass(frozen=True)
class Output:
    stream: str  # "stdout" | "stderr"
    data: bytes


class AgentSession:
    """Requests over a connected socket to the agent's port (or to the supervisor's relay)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = b""
        self._ids = int.from_bytes(os.urandom(3))

    @classmethod
    def connect(cls, vm_dir: Path, timeout: float = 5.0) -> AgentSession:
        from ignitevm.layout import VMFiles
        from ignitevm.vmm.qmp import connect_unix

        try:
            return cls(connect_unix(vm_dir / VMFiles.AGENT_SOCKET, timeout))
        except OSError as exc:
            raise AgentError(f"the VM's agent is not reachable: {exc.strerror or exc}",
                             hint="is the VM running? (ignite ps)") from None  # fmt: skip

    def close(self) -> None:
        self.sock.close()

    def _send(self, verb: str, *fields: str) -> str:
        self._ids += 1
        rid = f"{self._ids:x}"
        self.sock.sendall(" ".join((verb, rid, *fields)).encode() + b"\n")
        return rid

    def _lines(self, rid: str, deadline: float | None) -> Iterator[list[str]]:
        """The answer lines of request ``rid`` (split), until the caller stops."""
        while True:
            while b"\n" not in self._buf:
                if len(self._buf) > MAX_LINE:
                    raise AgentError("the guest agent sent an overlong line")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise AgentTimeout(
                        "the guest agent did not answer in time",
                        hint="the guest may be busy or stuck: see ignite logs",
                    )
                self.sock.settimeout(left)
                try:
                    chunk = self.sock.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    raise AgentError("the guest agent's connection closed")
                self._buf += chunk
            line, _, self._buf = self._buf.partition(b"\n")
            fields = line.decode("ascii", errors="replace").split()
            if len(fields) >= 2 and fields[1] == rid:
                yield fields

    def ping(self, timeout: float) -> None:
        rid = self._send("PING")
        for fields in self._lines(rid, time.monotonic() + timeout):
            if fields[0] == "PONG":
                return

    def ident(self, values: Mapping[str, str], timeout: float) -> None:
        """Give the guest its identity: ``ip`` (CIDR), ``gateway``, ``dns``, ``mac``,
        ``hostname``, ``seed`` (hex, mixed into its random generator, which is reseeded)."""
        text = "".join(f"{k}={v}\n" for k, v in values.items() if "\n" not in v)
        rid = self._send("IDENT", base64.b64encode(text.encode()).decode())
        for fields in self._lines(rid, time.monotonic() + timeout):
            if fields[0] == "OK":
                return
            if fields[0] == "ERR":
                reason = _b64(fields[2]) if len(fields) > 2 else b""
                raise AgentError(f"the guest could not take its new identity: "
                                 f"{reason.decode(errors='replace')[:200]}")  # fmt: skip

    def exec(self, command: str, stdin: bytes = b"", timeout: float | None = None,
             on_output: Callable[[Output], None] | None = None) -> int:  # fmt: skip
        """Run ``command`` (a shell command line) in the guest as root; its exit code. Output
        goes to ``on_output`` as it comes. After ``timeout`` seconds AgentTimeout, and the
        agent kills the command and what it started (it would hold the agent otherwise)."""
        data = base64.b64encode(stdin).decode() if stdin else "-"
        fields = [base64.b64encode(command.encode()).decode(), data]
        if timeout is not None:
            fields.append(str(max(1, math.ceil(timeout))))
        rid = self._send("EXEC", *fields)
        deadline = None if timeout is None else time.monotonic() + timeout
        for fields in self._lines(rid, deadline):
            kind = fields[0]
            if kind in ("O", "E") and len(fields) == 3 and on_output is not None:
                on_output(Output("stdout" if kind == "O" else "stderr", _b64(fields[2])))
            elif kind == "X":
                return _exit_code(fields)
            elif kind == "ERR":
                raise AgentError("the guest agent refused the command")
        raise AssertionError("unreachable")  # pragma: no cover


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise AgentError("the guest agent sent malformed data") from None


def _exit_code(fields: list[str]) -> int:
    try:
        code = int(fields[2])
    except (IndexError, ValueError):
        raise AgentError("the guest agent sent a malformed exit code") from None
    return code if 0 <= code <= 255 else 255
