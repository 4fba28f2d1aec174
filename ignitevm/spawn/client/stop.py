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
from ignitevm.spawn.protocol import REPRESS_INTERVAL
from ignitevm.spawn.runtime import (
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
        if status is None or status.vmm_pid is None:
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
    if status is not None and pid_in_dir(status.supervisor_pid, vm_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(status.supervisor_pid, sig)


def _kill_vmm(vm_dir: Path, status: RuntimeStatus | None) -> None:
    if status is not None and status.vmm_pid and pid_in_dir(status.vmm_pid, vm_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(status.vmm_pid, signal.SIGKILL)


def cleanup_stale(vm_dir: Path, plugins: Callable[[str], NetworkPlugin] | None = None) -> None:
    """Undo what a dead supervisor left (kill -9, host reboot): its VMM if it somehow lives,
    the network (with the plugin runtime.json names: the one that set it up, whatever the next
    start asks for) and the runtime files. Does nothing while the VM runs; idempotent and
    cheap when there is nothing to do. ``plugins`` looks a plugin up by name (tests: fakes)."""
    if plugins is None:
        from ignitevm.network.registry import require_plugin

        plugins = require_plugin
    status = read_runtime(vm_dir)
    if status is None:
        from ignitevm.vmm.driver import all_runtime_files

        sockets = (vm_dir / name for name in all_runtime_files())
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
        record_lost_run(vm_dir, status)  # for restart policies: this run ended abnormally
        try:
            plugins(status.network).detach(status.network_request(vm_dir))
        except IgniteError as exc:
            # Keep runtime.json: the next cleanup (ps, start, rm) tries again.
            log.warning("cannot undo the network of the VM in %s: %s", vm_dir, exc)
            return
        remove_runtime_files(vm_dir)
    finally:
        os.close(lock_fd)
