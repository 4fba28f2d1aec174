"""What ops/ calls: start a supervisor, wait for the boot, stop, kill, ask what runs."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any

import ignitevm
from ignitevm import proc
from ignitevm.errors import ConflictError, IgniteError
from ignitevm.network.base import NetworkPlugin
from ignitevm.network.registry import require_plugin
from ignitevm.spawn.plan import CONSOLE_FILE, SUPERVISOR_LOG, LaunchPlan
from ignitevm.spawn.runtime import (
    RuntimeStatus,
    is_running,
    pid_in_dir,
    read_runtime,
)
from ignitevm.spawn.supervisor import remove_runtime_files
from ignitevm.spawn.vmmdriver import driver_for
from ignitevm.store.locks import try_hold_lock
from ignitevm.vmm.base import VMMName
from ignitevm.vmm.firecracker import API_SOCKET
from ignitevm.vmm.qemu import QMP_SOCKET
from ignitevm.vmm.qmp import QMPClient, QMPError

log = logging.getLogger(__name__)

LAUNCH_TIMEOUT = 120.0  # network setup (CNI) and QEMU start, not the boot
KILL_TIMEOUT = 10.0
REPRESS_INTERVAL = 3.0  # seconds between power button presses


def tail_lines(path: Path, count: int = 20, max_bytes: int = 16384) -> list[str]:
    """The last ``count`` lines of a text file (empty when it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            data = f.read()
    except OSError:
        return []
    text = data.decode(errors="replace").replace("\r", "")
    return text.splitlines()[-count:]


def launch(plan: LaunchPlan, timeout: float = LAUNCH_TIMEOUT) -> int:
    """Write the plan, start the detached supervisor, and return its pid once the VMM runs.

    Raises IgniteError (with the supervisor's reason and log tail) when it could not start."""
    if is_running(plan.vm_dir):
        raise ConflictError(
            f"VM {plan.name} is already running", hint=f"stop it first: ignite stop {plan.name}"
        )
    plan.write()
    log_path = plan.vm_dir / SUPERVISOR_LOG
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        with open(log_path, "wb") as logf:
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
            msg = _read_ready(read_fd, timeout)
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
    root = str(Path(ignitevm.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _read_ready(fd: int, timeout: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise IgniteError(
                f"the supervisor did not report in {timeout:g} s", hint="see supervisor.log"
            )
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    if not data.strip():
        return None
    result: dict[str, Any] = json.loads(data.splitlines()[0])
    return result


def wait_for_boot(vm_dir: Path, marker: str, timeout: float) -> None:
    """Follow console.log until ``marker`` appears. Raises IgniteError with the console's last
    lines when the VM stops first or ``timeout`` passes."""
    needle = marker.encode()
    deadline = time.monotonic() + timeout
    follower = ConsoleFollower(vm_dir / CONSOLE_FILE)
    tail = b""
    while True:
        alive = is_running(vm_dir)  # read before the file, so a final write is not missed
        window = tail + follower.read_new()
        if needle in window:
            return
        tail = window[-len(needle) :]
        if not alive:
            _boot_failed(vm_dir, f"the VM stopped before it booted (no {marker!r} on its console)")
        if time.monotonic() > deadline:
            _boot_failed(vm_dir, f"the VM did not boot in {timeout:g} s (no {marker!r} yet)")
        time.sleep(0.02)


class ConsoleFollower:
    """Reads what was appended to console.log since the last call, across its rotation to
    console.log.1 (the end of the old file is read first) and across a restart (truncation).
    ``ConsoleFollower(vm_dir / "console.log").read_new()``: for ``ignite logs -f`` too."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.old = path.with_name(path.name + ".1")
        self.inode: int | None = None
        self.offset = 0

    def read_new(self) -> bytes:
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                rest = b""
                if st.st_ino != self.inode or st.st_size < self.offset:
                    rest = self._rest_of_rotated()
                    self.inode, self.offset = st.st_ino, 0
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return b""
        self.offset += len(data)
        return rest + data

    def _rest_of_rotated(self) -> bytes:
        if self.inode is None:
            return b""
        try:
            with open(self.old, "rb") as f:
                if os.fstat(f.fileno()).st_ino != self.inode:
                    return b""
                f.seek(self.offset)
                return f.read()
        except FileNotFoundError:
            return b""


def _boot_failed(vm_dir: Path, message: str) -> None:
    lines = tail_lines(vm_dir / CONSOLE_FILE, 20)
    console = "\n  ".join(lines) if lines else "(the console is empty)"
    raise IgniteError(
        f"{message}; console.log ends with:\n  {console}",
        hint=f"see {vm_dir / CONSOLE_FILE} and {vm_dir / SUPERVISOR_LOG}",
    )


def wait_until_stopped(vm_dir: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_running(vm_dir):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def request_stop(vm_dir: Path, timeout: float) -> bool:
    """Graceful stop: press the ACPI power button (QMP system_powerdown) and wait for the
    supervisor to finish. True when stopped (or not running); False on timeout.

    The button is pressed again every few seconds: a press before the guest's acpid listens
    (just after boot) is lost."""
    deadline = time.monotonic() + timeout
    signalled = False
    status = read_runtime(vm_dir)
    driver = driver_for(status.vmm if status else VMMName.QEMU, vm_dir)
    while is_running(vm_dir):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            driver.powerdown()
        except IgniteError as exc:
            if not is_running(vm_dir):
                return True
            if not signalled:  # no QMP/API (yet): SIGTERM makes the supervisor press it
                log.debug("%s powerdown failed (%s): signalling the supervisor", driver.name, exc)
                _signal_supervisor(vm_dir, signal.SIGTERM)
                signalled = True
        remaining = deadline - time.monotonic()
        if wait_until_stopped(vm_dir, max(0.0, min(REPRESS_INTERVAL, remaining))):
            return True
    return True


def _signal_supervisor(vm_dir: Path, sig: int) -> None:
    status = read_runtime(vm_dir)
    if status is not None and pid_in_dir(status.supervisor_pid, vm_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(status.supervisor_pid, sig)


def kill(vm_dir: Path) -> None:
    """Hard stop at once: QMP quit, SIGKILL of the VMM, and as a last resort of the supervisor.
    Returns when the lock is free and nothing of the run is left."""
    if is_running(vm_dir):
        status = read_runtime(vm_dir)
        if status is None or status.vmm_pid is None:
            # Still setting up (e.g. the network): its crash path is the quickest way out.
            _signal_supervisor(vm_dir, signal.SIGKILL)
        elif status.vmm == VMMName.FIRECRACKER:
            _kill_vmm(vm_dir, status)  # Firecracker has no "quit": SIGKILL is its hard stop
        else:
            try:
                with QMPClient(vm_dir / QMP_SOCKET, timeout=1.0) as qmp:
                    qmp.execute("quit")
            except QMPError as exc:
                log.debug("QMP quit failed: %s", exc)
            if not wait_until_stopped(vm_dir, 2.0):
                _kill_vmm(vm_dir, status)
        if not wait_until_stopped(vm_dir, KILL_TIMEOUT):
            _signal_supervisor(vm_dir, signal.SIGKILL)
            if not wait_until_stopped(vm_dir, KILL_TIMEOUT):
                raise IgniteError(f"cannot stop the VM in {vm_dir}: its supervisor hangs")
    cleanup_stale(vm_dir, None)


def _kill_vmm(vm_dir: Path, status: RuntimeStatus | None) -> None:
    if status is not None and status.vmm_pid and pid_in_dir(status.vmm_pid, vm_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(status.vmm_pid, signal.SIGKILL)


def cleanup_stale(vm_dir: Path, plugin: NetworkPlugin | None) -> None:
    """Undo what a dead supervisor left (kill -9, host reboot): its VMM if it somehow lives,
    the network (``plugin.detach``; None: the plugin named in runtime.json) and the runtime
    files. Does nothing while the VM runs; idempotent and cheap when there is nothing to do."""
    status = read_runtime(vm_dir)
    if status is None:
        sockets = (vm_dir / QMP_SOCKET, vm_dir / API_SOCKET)
        if any(p.exists() for p in sockets) and not is_running(vm_dir):
            remove_runtime_files(vm_dir)
        return
    lock_fd = try_hold_lock(vm_dir)
    if lock_fd is None:
        return  # a supervisor runs: nothing is stale
    try:
        if status.vmm_pid and pid_in_dir(status.vmm_pid, vm_dir):
            log.warning("killing VMM %d left by a dead supervisor", status.vmm_pid)
            os.kill(status.vmm_pid, signal.SIGKILL)
        try:
            net = plugin if plugin is not None else require_plugin(status.network)
            net.detach(status.network_request(vm_dir))
        except IgniteError as exc:
            # Keep runtime.json: the next cleanup (ps, start, rm) tries again.
            log.warning("cannot undo the network of the VM in %s: %s", vm_dir, exc)
            return
        remove_runtime_files(vm_dir)
    finally:
        os.close(lock_fd)
