"""Running a command in a VM through its guest agent (docs/internals.md "The guest agent"): no
SSH handshake, no key, so a VM resumed from a snapshot answers within milliseconds. Used by
`ignite exec` when there is no input to forward (no -t, stdin a terminal, /dev/null or closed)
and by the library; everything else goes over SSH (ops/access.py).

The agent runs the command as root in the VM's root, with a login shell's PATH and HOME.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ignitevm.errors import ConflictError
from ignitevm.layout import VMFiles
from ignitevm.ops.services import Services
from ignitevm.ops.vmlist import require_vm, vm_dir


def agent_dir(svc: Services, query: str) -> Path | None:
    """The VM's directory when its agent can be asked (root, a running VM with an agent);
    None: use SSH. ConflictError when the VM does not run."""
    from ignitevm import spawn

    vm = require_vm(svc, query)
    d = vm_dir(svc, vm)
    status = spawn.runtime_status(d)
    if status is None:
        raise ConflictError(f"VM {vm.metadata.name} is not running",
                            hint=f"start it: ignite start {vm.metadata.name}")  # fmt: skip
    if os.geteuid() != 0 or status.state == "paused":
        return None
    return d if (d / VMFiles.AGENT_SOCKET).exists() else None


def no_input(fd: int = 0) -> bool:
    """Whether ``fd`` has nothing to forward: a terminal (Docker's exec reads none without -i),
    /dev/null or closed. A pipe, file or socket goes over SSH, which streams it."""
    try:
        st = os.fstat(fd)
    except OSError:
        return True
    if os.isatty(fd):
        return True
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)


def agent_exec(
    d: Path,
    command: str,
    *,
    on_stdout: Callable[[bytes], None],
    on_stderr: Callable[[bytes], None],
    stdin: bytes = b"",
    timeout: float | None = None,
    connect_timeout: float = 5.0,
) -> int:
    """Run ``command`` (a shell command line) in the VM in ``d``; its exit code."""
    from ignitevm.vmm.agent import AgentSession, Output

    def out(chunk: Output) -> None:
        (on_stdout if chunk.stream == "stdout" else on_stderr)(chunk.data)

    from ignitevm.vmm.agent import AgentTimeout

    session = AgentSession.connect(d, connect_timeout)
    try:
        return session.exec(command, stdin=stdin, timeout=timeout, on_output=out)
    except AgentTimeout:
        if timeout is None:
            raise
        raise _too_long(command, timeout, " (it was killed)") from None
    finally:
        session.close()


def ssh_exec(
    svc: Services,
    query: str,
    command: str,
    *,
    on_stdout: Callable[[bytes], None],
    on_stderr: Callable[[bytes], None],
    stdin: bytes = b"",
    timeout: float | None = None,
    connect_timeout: float = 30.0,
    identity: Path | None = None,
) -> int:
    """Run ``command`` over SSH (the VM's key or ``identity``), streaming its output; its exit
    code. Timeout when it runs longer than ``timeout``."""
    import selectors
    import time

    from ignitevm import proc
    from ignitevm.ops.access import connect, require_target

    target = require_target(svc, query, identity)
    connect(target, connect_timeout)
    child = proc.start([*target.argv(tty=False, timeout=connect_timeout), command],
                       stdin=proc.PIPE, stdout=proc.PIPE, stderr=proc.PIPE)  # fmt: skip
    assert child.stdin is not None and child.stdout is not None and child.stderr is not None
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        _feed(child.stdin, stdin)
        sel = selectors.DefaultSelector()
        sel.register(child.stdout, selectors.EVENT_READ, on_stdout)
        sel.register(child.stderr, selectors.EVENT_READ, on_stderr)
        while sel.get_map():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise _too_long(command, timeout or 0.0, "")
            for key, _ in sel.select(left):
                data = os.read(key.fd, 65536)
                if data:
                    key.data(data)
                else:
                    sel.unregister(key.fileobj)
        return child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for pipe in (child.stdout, child.stderr):
            pipe.close()


def _too_long(command: str, timeout: float, what_became: str) -> Exception:
    """The Timeout of a command that ran past ``timeout`` seconds."""
    from ignitevm.errors import Timeout

    return Timeout(f"{command!r} did not finish in {timeout:g} s in the VM{what_became}",
                   hint="give it more time (timeout=), or run it in the background")  # fmt: skip


def _feed(pipe: IO[bytes], data: bytes) -> None:
    """stdin for the remote command, then end of file (a writer thread: ssh may need to read
    its output before it takes all of a large input)."""
    import threading

    def write() -> None:
        try:
            pipe.write(data)
        except OSError:
            pass  # the command ended without reading it all
        finally:
            with contextlib.suppress(OSError):
                pipe.close()

    threading.Thread(target=write, daemon=True).start()
