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
VMM_PROGRAMS = (b"qemu-system-x86_64", b"firecracker", b"jailer")


class RunOutcome(StrEnum):
    """How a run ended (docs/runtime.md "How a run ended")."""

    EXITED = "exited"  # the VMM exited with 0: the guest powered off or rebooted, or a stop
    CRASHED = "crashed"  # the VMM exited non-zero or was killed by a signal
    # the supervisor was told to stop (SIGTERM/SIGINT): a host shutdown (systemd signals every
    # process), or a stop that could not reach the VMM's control socket
    TERMINATED = "terminated"
    SUSPENDED = "suspended"  # ignite suspend: saved, then the VMM quit; resumed, not restarted
    LOST = "lost"  # the supervisor vanished (kill -9, OOM, a host reboot): found stale


@dataclass(frozen=True)
class LastRun:
    """``last-run.json``: written when a run ends, by its supervisor or, for a supervisor that
    vanished, by the cleanup that finds its stale runtime.json."""

    outcome: RunOutcome
    started_at: float  # the run's runtime.json started_at: which run this record is about
    ended_at: float | None = None  # None: unknown (lost)
    exit_code: int | None = None  # the VMM's; negative: killed by that signal


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
    shares: tuple[Path, ...] = ()  # host directories jail_uid was given ACL entries on
    # the guest's RAM: the supervisor's fd (a VM restored from the same snapshot maps it too)
    memory_fd: int | None = None
    snapshot: str = ""  # the snapshot this run was resumed from
    id_prefix: str = DEFAULT_ID_PREFIX

    def network_request(self, vm_dir: Path) -> NetworkRequest:
        return NetworkRequest(self.vm_uid, self.vm_name, vm_dir, self.mac, self.ports,
                              id_prefix=self.id_prefix)  # fmt: skip


def write_runtime(vm_dir: Path, status: RuntimeStatus) -> None:
    write_record(vm_dir / RUNTIME_FILE, status)


def write_last_run(vm_dir: Path, record: LastRun) -> None:
    write_record(vm_dir / VMFiles.LAST_RUN, record, fsync=True)


def read_last_run(vm_dir: Path) -> LastRun | None:
    try:
        return read_record(LastRun, vm_dir / VMFiles.LAST_RUN)
    except (OSError, RecordError):
        return None


def vmm_outcome(exit_code: int, *, signalled: bool = False, suspended: bool = False) -> RunOutcome:
    if suspended and exit_code == 0:
        return RunOutcome.SUSPENDED
    if signalled:
        return RunOutcome.TERMINATED
    return RunOutcome.EXITED if exit_code == 0 else RunOutcome.CRASHED


def record_lost_run(vm_dir: Path, status: RuntimeStatus) -> None:
    """A stale runtime.json means its supervisor vanished: record that run as lost, unless its
    supervisor recorded the end itself (it writes last-run.json before removing runtime.json)."""
    last = read_last_run(vm_dir)
    if last is None or last.started_at != status.started_at:
        write_last_run(vm_dir, LastRun(RunOutcome.LOST, status.started_at))


def is_suspended(vm_dir: Path) -> bool:
    """Whether the VM in ``vm_dir`` was suspended and its saved machine is whole: its last run
    ended by a suspend (recorded by the supervisor once its VMM quit after saving) and the
    saved state is there (docs/snapshots.md "Suspend")."""
    last = read_last_run(vm_dir)
    if last is None or last.outcome != RunOutcome.SUSPENDED:
        return False
    return (vm_dir / VMFiles.SUSPENDED_STATE).exists()


def is_running(vm_dir: Path) -> bool:
    """True while the VM's supervisor holds the lock on vm_dir (docs/architecture.md "State and
    truth")."""
    try:
        return is_locked(vm_dir)
    except PermissionError:
        return _supervisor_lives(vm_dir, read_runtime(vm_dir))


def runtime_status(vm_dir: Path) -> RuntimeStatus | None:
    """The supervisor's runtime.json while it runs; None when the VM does not run."""
    status = read_runtime(vm_dir)
    if status is None:
        return None
    try:
        running = is_locked(vm_dir)
    except PermissionError:
        running = _supervisor_lives(vm_dir, status)
    return status if running else None


def _supervisor_lives(vm_dir: Path, status: RuntimeStatus | None) -> bool:
    """For a user who may not open the VM's directory (0711: traverse only), so cannot probe
    its lock: does the supervisor runtime.json names still run, with this directory? Its
    command line (world-readable in /proc) is ``python -S -m ignitevm.spawn VM_DIR ...``; a
    pid reused by another process does not have it. Root always asks the lock."""
    if status is None:
        return False
    try:
        args = Path(f"/proc/{status.supervisor_pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if b"ignitevm.spawn" not in args:
        return False
    target = args[args.index(b"ignitevm.spawn") + 1 :][:1]
    return bool(target) and Path(os.fsdecode(target[0])).resolve() == vm_dir.resolve()


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
