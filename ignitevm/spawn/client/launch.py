"""Starting a VM's supervisor: write the plan, start ``python -m ignitevm.spawn`` detached,
wait on the ready pipe (spawn/protocol.py) until the VMM runs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ignitevm import proc
from ignitevm.errors import ConflictError, IgniteError
from ignitevm.fsutil import PRIVATE_MODE, create_file
from ignitevm.layout import VMFiles
from ignitevm.spawn.client.console import tail_lines
from ignitevm.spawn.client.stop import KILL_TIMEOUT, kill, wait_until_stopped
from ignitevm.spawn.plan import LaunchPlan
from ignitevm.spawn.protocol import read_ready
from ignitevm.spawn.runtime import is_running

LAUNCH_TIMEOUT = 120.0  # network setup (CNI) and the VMM's start, not the boot


def launch(plan: LaunchPlan, timeout: float = LAUNCH_TIMEOUT, *, early: bool = False) -> int:
    """Write the plan, start the detached supervisor, and return its pid once the VMM runs
    (``early``: or once the supervisor says it waits for the user, spawn/protocol.py).

    Raises IgniteError (with the supervisor's reason and log tail) when it could not start."""
    if is_running(plan.vm_dir):
        raise ConflictError(
            f"VM {plan.name} is already running", hint=f"stop it first: ignite stop {plan.name}"
        )
    plan.write()
    log_path = plan.vm_dir / VMFiles.SUPERVISOR_LOG
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        with create_file(log_path, PRIVATE_MODE) as logf:  # QEMU's stderr: root's
            child = proc.start(
                [sys.executable, "-S", "-m", "ignitevm.spawn", str(plan.vm_dir),
                 "--ready-fd", str(write_fd)],
                env=_supervisor_env(),
                stdin=proc.DEVNULL,
                stdout=logf,
                stderr=proc.STDOUT,
                cwd="/",
                close_fds=True,
                pass_fds=(write_fd,),
                start_new_session=True,  # no controlling terminal: survives the CLI's exit
            )  # fmt: skip
        os.close(write_fd)
        write_fd = -1
        try:
            msg = read_ready(read_fd, timeout, early=early)
        except IgniteError:
            kill(plan.vm_dir)  # do not leave a half-started VM behind
            raise
        finally:
            _reap_intermediate(child)
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    if msg is None or not msg.get("ok"):
        wait_until_stopped(plan.vm_dir, KILL_TIMEOUT)  # it cleans up, then lets go of the lock
        reason = msg.get("error") if msg else "the supervisor exited without saying why"
        hint = (msg or {}).get("hint") or "see its log"
        tail = "\n  ".join(tail_lines(log_path, 10))
        raise IgniteError(
            f"VM {plan.name} did not start: {reason}\n  {log_path}:\n  {tail}", hint=hint
        )
    return int(msg["pid"])


def _reap_intermediate(child: proc.Popen[bytes]) -> None:
    """The process launch() started exits right after its fork; one that hangs before it is
    killed (the lock tells whether a supervisor runs, not this pid)."""
    try:
        child.wait(timeout=5)
    except proc.TimeoutExpired:
        child.kill()
        child.wait()


def _supervisor_env() -> dict[str, str]:
    """Python runs the supervisor without ``site`` (-S): it needs only the standard library and
    ignitevm, found through PYTHONPATH, and skipping site-packages' start-up hooks (editable
    installs, .pth files) saves ~50 ms of every start and some memory."""
    root = str(Path(__file__).resolve().parents[3])  # the directory holding ignitevm/
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env
