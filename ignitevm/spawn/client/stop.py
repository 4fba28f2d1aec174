"""Stopping a VM from outside its supervisor, and cleaning up after a dead one."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ignitevm.errors import IgniteError
from ignitevm.layout import VMFiles
from ignitevm.spawn.protocol import REPRESS_INTERVAL
from ignitevm.spawn.runtime import (
    RuntimeState,
    RuntimeStatus,
    is_running,
    pid_in_dir,
    read_runtime,
    record_lost_run,
    remove_runtime_files,
)
from ignitevm.store.locks import try_hold_lock
from ignitevm.vmm.base import VMMName
from ignitevm.vmm.driver import driver_for

if TYPE_CHECKING:
    from ignitevm.network.base import NetworkPlugin

log = logging.getLogger(__name__)

KILL_TIMEOUT = 10.0


def wait_until_stopped(vm_dir: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_running(vm_dir):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def request_stop(vm_dir: Path, timeout: float) -> bool:
    """Graceful stop: press the power button (the VMM's driver knows how) and wait for the
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


def kill(vm_dir: Path) -> None:
    """Hard stop at once: the driver's hard stop, SIGKILL of the VMM, and as a last resort of
    the supervisor. Returns when the lock is free and nothing of the run is left."""
    if is_running(vm_dir):
        status = read_runtime(vm_dir)
        if status is None:
            # runtime.json is damaged: its VMM, found by the VM's uid, goes; the supervisor
            # then tears the network down from what it holds itself
            _kill_vmms(vm_dir)
        elif status.vmm_pid is None:
            # Still setting up (e.g. the network): its crash path is the quickest way out.
            _signal_supervisor(vm_dir, signal.SIGKILL)
        else:
            driver = driver_for(status.vmm, vm_dir)
            if pid_in_dir(status.vmm_pid, vm_dir):
                try:
                    driver.hard_stop(status.vmm_pid)
                except IgniteError as exc:
                    log.debug("%s hard stop failed: %s", driver.name, exc)
            if not wait_until_stopped(vm_dir, driver.hard_stop_grace):
                _kill_vmm(vm_dir, status)
        if not wait_until_stopped(vm_dir, KILL_TIMEOUT):
            _signal_supervisor(vm_dir, signal.SIGKILL)
            if not wait_until_stopped(vm_dir, KILL_TIMEOUT):
                raise IgniteError(f"cannot stop the VM in {vm_dir}: its supervisor hangs")
    cleanup_stale(vm_dir)


def _signal_supervisor(vm_dir: Path, sig: int) -> None:
    status = read_runtime(vm_dir)
    pids = [status.supervisor_pid] if status is not None else _supervisors_of(vm_dir)
    for pid in pids:
        if pid_in_dir(pid, vm_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


def kill_orphan(vm_dir: Path) -> None:
    """Stop a VM whose directory was removed while it ran (its supervisor holds the lock of a
    deleted directory): its VMM goes, the supervisor tears down with the records it holds;
    then whatever of its network is left goes too (the cni plugin by container id)."""
    from ignitevm.network.base import NetworkRequest
    from ignitevm.network.registry import require_plugin

    _kill_vmms(vm_dir)
    deadline = time.monotonic() + KILL_TIMEOUT
    while (supervisors := _supervisors_of(vm_dir)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in supervisors:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    from ignitevm.network.cnirecord import leftover_prefix

    prefix = leftover_prefix(vm_dir.name)
    if prefix is not None:
        req = NetworkRequest(vm_dir.name, "", vm_dir, "", id_prefix=prefix)
        require_plugin("cni").detach(req)
    from ignitevm.vmm.cgroups import group_procs, remove

    remove(group_procs(vm_dir.name))


def _kill_vmms(vm_dir: Path) -> None:
    for pid in _processes_of(vm_dir):
        if pid_in_dir(pid, vm_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _supervisors_of(vm_dir: Path) -> list[int]:
    """Supervisors of the VM: ``python -m ignitevm.spawn <vm_dir>`` (even of a deleted dir)."""
    found = []
    for pid in _processes_of(vm_dir):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"ignitevm.spawn" in argv and str(vm_dir).encode() in argv:
                found.append(pid)
    return found


def _kill_vmm(vm_dir: Path, status: RuntimeStatus | None) -> None:
    if status is not None and status.vmm_pid and pid_in_dir(status.vmm_pid, vm_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(status.vmm_pid, signal.SIGKILL)


def cleanup_stale(vm_dir: Path, plugins: Callable[[str], NetworkPlugin] | None = None) -> None:
    """Undo what a dead supervisor left (kill -9, host reboot): its VMM if it somehow lives,
    the network (with the plugin runtime.json names: the one that set it up, whatever the next
    start asks for), its cgroups and the runtime files. A damaged or missing runtime.json is
    no reason to leak: the network is then undone from what it left (network.json, the netns).
    Does nothing while the VM runs; idempotent and cheap when there is nothing to do.
    ``plugins`` looks a plugin up by name (tests: fakes)."""
    if plugins is None:
        from ignitevm.network.registry import require_plugin

        plugins = require_plugin
    status = read_runtime(vm_dir)
    if status is None and not _left_behind(vm_dir):
        return
    try:
        lock_fd = try_hold_lock(vm_dir)
    except FileNotFoundError:
        return
    if lock_fd is None:
        return  # a supervisor runs: nothing is stale
    try:
        status = status or _status_from_leftovers(vm_dir)
        for pid in (status.vmm_pid, *_processes_of(vm_dir)):
            if pid and pid_in_dir(pid, vm_dir):
                log.warning("killing VMM %d left by a dead supervisor", pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        record_lost_run(vm_dir, status)  # for restart policies: this run ended abnormally
        try:
            plugins(status.network).detach(status.network_request(vm_dir))
        except IgniteError as exc:
            # Keep runtime.json: the next cleanup (ps, start, rm) tries again.
            log.warning("cannot undo the network of the VM in %s: %s", vm_dir, exc)
            return
        from ignitevm.vmm.cgroups import group_procs, remove

        remove(status.cgroups or group_procs(vm_dir.name))
        if status.jail_uid is not None and status.shares:
            from ignitevm.vmm.confine import release_after_crash

            release_after_crash(status.jail_uid, status.shares)
        remove_runtime_files(vm_dir)
    finally:
        os.close(lock_fd)


def _left_behind(vm_dir: Path) -> bool:
    """Whether a run left anything although runtime.json is missing or damaged."""
    from ignitevm.network.cnirecord import NetworkRecord, leftover_prefix
    from ignitevm.vmm.driver import all_runtime_files

    names = (VMFiles.RUNTIME, *all_runtime_files())
    if any((vm_dir / name).exists() for name in names):
        return True
    if (vm_dir / VMFiles.NETWORK).exists():
        record = NetworkRecord.load(vm_dir)
        if record is None or record.attached:
            return True
    return leftover_prefix(vm_dir.name) is not None


def _status_from_leftovers(vm_dir: Path) -> RuntimeStatus:
    """A runtime record for a run whose runtime.json is damaged or missing: the cni plugin
    (the only one that leaves host state) undoes what network.json or the netns say."""
    from ignitevm.network.base import DEFAULT_ID_PREFIX
    from ignitevm.network.cnirecord import leftover_prefix

    log.warning("the VM in %s has no readable runtime.json: cleaning up from what is left",
                vm_dir)  # fmt: skip
    prefix = leftover_prefix(vm_dir.name) or DEFAULT_ID_PREFIX
    return RuntimeStatus(supervisor_pid=0, vmm="", state=RuntimeState.STOPPING, started_at=0.0,
                         network="cni", vm_uid=vm_dir.name, id_prefix=prefix)  # fmt: skip


def _processes_of(vm_dir: Path) -> list[int]:
    """VMM processes naming the VM's uid (one whose supervisor is gone); pid_in_dir confirms."""
    needle = vm_dir.name.encode()
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if needle in Path(entry.path, "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found
