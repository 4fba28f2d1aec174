"""The supervisor's records in vm_dir: runtime.json and the lock that says "running".

Cheap to import (ps, inspect and exec need only this): the standard library and the records."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from ignitevm.layout import VMFiles
from ignitevm.network.base import NetworkRequest, PortMapping
from ignitevm.records import RecordError, read_record, write_record
from ignitevm.store.locks import is_locked

RUNTIME_FILE = VMFiles.RUNTIME
VMM_PROGRAMS = (b"qemu-system-x86_64", b"firecracker", b"jailer")


class RuntimeState(StrEnum):
    STARTING = "starting"  # the lock is held, the network may be half set up
    RUNNING = "running"  # the VMM runs
    STOPPING = "stopping"  # a graceful stop was asked for
    PAUSED = "paused"  # ignite pause: vCPUs frozen, memory kept
    SUSPENDED = "suspended"  # ignite suspend: saving, then the VMM quits


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
    # the jail of the run: the VMM's uid, its cgroups (removed by the cleanup after a crash)
    jail_uid: int | None = None
    cgroups: tuple[Path, ...] = ()
    # the guest's RAM: the supervisor's fd (a VM restored from the same snapshot maps it too)
    memory_fd: int | None = None
    snapshot: str = ""  # the snapshot this run was resumed from

    def network_request(self, vm_dir: Path) -> NetworkRequest:
        return NetworkRequest(self.vm_uid, self.vm_name, vm_dir, self.mac, self.ports)


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
    """True when process ``pid`` belongs to the VM of vm_dir: the supervisor works there, and
    its VMM names files of that directory on its command line (a jailed VMM's working
    directory is its jail's root). This tells them from an unrelated process that reused a
    pid."""
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    where = str(vm_dir.resolve())
    if cwd == where:
        return True
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    # a jailed VMM names no path of vm_dir: it names its VM's uid (QEMU's -name, the
    # jailer's --id), 16 random hex characters. Only a VMM counts: other processes may name
    # the VM's files (a `tail -f` of its console) and must never be taken for its own.
    uid = vm_dir.name.encode()
    # the program, or the script an interpreter runs (a VMM's wrapper)
    program = {os.path.basename(a) for a in argv[:2]}
    return bool(program & set(VMM_PROGRAMS)) and any(uid in arg for arg in argv)


def remove_runtime_files(vm_dir: Path) -> None:
    """What one run leaves in vm_dir: the shared SSH connection (it lives as long as the run),
    runtime.json, the attach socket and every VMM's sockets."""
    from ignitevm.spawn.sshmux import close_master
    from ignitevm.vmm.driver import remove_all_run_files

    close_master(vm_dir)
    for name in (RUNTIME_FILE, VMFiles.ATTACH_SOCKET, VMFiles.AGENT_SOCKET, VMFiles.CONTROL_SOCKET):
        (vm_dir / name).unlink(missing_ok=True)
    remove_all_run_files(vm_dir)
