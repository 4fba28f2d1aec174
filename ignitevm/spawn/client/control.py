"""Asking a running VM's supervisor (its control socket, spawn/control.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ignitevm.errors import IgniteError
from ignitevm.layout import VMFiles


def request(vm_dir: Path, op: str, timeout: float = 120.0, **args: Any) -> dict[str, Any]:
    """The supervisor's answer to ``op``; IgniteError (its message and hint) on a refusal."""
    from ignitevm.vmm.qmp import connect_unix

    try:
        sock = connect_unix(vm_dir / VMFiles.CONTROL_SOCKET, timeout)
    except OSError as exc:
        raise IgniteError(f"the VM's supervisor does not answer: {exc.strerror or exc}",
                          hint="is the VM running? (ignite ps)") from None  # fmt: skip
    with sock:
        sock.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
        data = b""
        while b"\n" not in data:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                msg = f"the VM's supervisor did not finish {op} in {timeout:g} s"
                raise IgniteError(msg) from None
            if not chunk:
                break
            data += chunk
    try:
        reply: dict[str, Any] = json.loads(data.split(b"\n", 1)[0])
    except ValueError:
        raise IgniteError(f"the VM's supervisor ended without answering {op}",
                          hint="see its supervisor.log") from None  # fmt: skip
    if not reply.get("ok"):
        raise IgniteError(str(reply.get("error")), hint=reply.get("hint"))
    return reply
