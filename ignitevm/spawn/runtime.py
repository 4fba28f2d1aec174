"""The supervisor's records in vm_dir: runtime.json and the lock that says "running".

Cheap to import (ps, inspect and exec need only this): the standard library and the records."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from ignitevm.layout import VMFiles
from ignitevm.network.base import DEFAULT_ID_PREFIX, NetworkRequest, PortMapping
from ignitevm.records import RecordError, read_record, write_record
from ignitevm.store.locks import is_locked

RUNTIME_FILE = VMFiles.RUNTIME


class RuntimeState(StrEnum):
    STARTING = "starting"  # the lock is held, the network may be half set up
    RUNNING = "running"  # the VMM runs
    STOPPING = "stopping"  # a graceful stop was asked for


@dataclass(frozen=True)
class RuntimeStatus:
    supervisor_pid: int
    vmm: str
    state: RuntimeState
    started_at: float  # epoch seconds
    vmm_pid: int | None = None
    vmm_started_at: float | None = None  # epoch seconds
    ip_addresses: tuple[str, ...] = ()
    netns: str | None = None
    tap: str | None = None
    # The network request, so the network can be undone after a crash without launch.json.
    network: str = "none"
    vm_uid: str = ""
    vm_name: str = ""
    mac: str = ""
    ports: tuple[PortMapping, ...] = ()
    id_prefix: str = DEFAULT_ID_PREFIX

    def network_request(self, vm_dir: Path) -> NetworkRequest:
        return NetworkRequest(self.vm_uid, self.vm_name, vm_dir, self.mac, self.ports,
                              id_prefix=self.id_prefix)  # fmt: skip


def write_runtime(vm_dir: Path, status: RuntimeStatus) -> None:
    write_record(vm_dir / RUNTIME_FILE, status)


def is_running(vm_dir: Path) -> bool:
    """True while the VM's supervisor holds the lock on vm_dir (docs/architecture.md "State and
    truth")."""
    return is_locked(vm_dir)


def runtime_status(vm_dir: Path) -> RuntimeStatus | None:
    """The supervisor's runtime.json while it runs; None when the VM does not run."""
    status = read_runtime(vm_dir)
    if status is None or not is_locked(vm_dir):
        return None
    return status


def read_runtime(vm_dir: Path) -> RuntimeStatus | None:
    """runtime.json as written, whether or not its supervisor still lives; None if absent or
    damaged (the cleanup then works from what the network left: network.json, the netns)."""
    try:
        return read_record(RuntimeStatus, vm_dir / RUNTIME_FILE)
    except (OSError, RecordError):
        return None


def pid_in_dir(pid: int, vm_dir: Path) -> bool:
    """True when process ``pid`` lives with vm_dir as its working directory: the supervisor
    and its VMM both run there, which tells them from an unrelated process that reused a pid."""
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return cwd == str(vm_dir.resolve())


def remove_runtime_files(vm_dir: Path) -> None:
    """What one run leaves in vm_dir: the shared SSH connection (it lives as long as the run),
    runtime.json, the attach socket and every VMM's sockets."""
    from ignitevm.spawn.sshmux import close_master
    from ignitevm.vmm.driver import all_runtime_files

    close_master(vm_dir)
    for name in (RUNTIME_FILE, VMFiles.ATTACH_SOCKET, *all_runtime_files()):
        (vm_dir / name).unlink(missing_ok=True)
