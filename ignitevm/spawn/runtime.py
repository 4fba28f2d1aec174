"""The supervisor's records in vm_dir: runtime.json and the lock that says "running"."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from ignitevm.fsutil import write_json_atomic
from ignitevm.network.base import NetworkRequest, PortMapping
from ignitevm.store.locks import is_locked

RUNTIME_FILE = "runtime.json"


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
    ports: tuple[PortMapping, ...] = field(default_factory=tuple)

    def network_request(self, vm_dir: Path) -> NetworkRequest:
        return NetworkRequest(self.vm_uid, self.vm_name, vm_dir, self.mac, self.ports)

    def to_dict(self) -> dict[str, Any]:
        return {
            "supervisor_pid": self.supervisor_pid,
            "vmm": self.vmm,
            "state": str(self.state),
            "started_at": self.started_at,
            "vmm_pid": self.vmm_pid,
            "vmm_started_at": self.vmm_started_at,
            "ip_addresses": list(self.ip_addresses),
            "netns": self.netns,
            "tap": self.tap,
            "network": self.network,
            "vm_uid": self.vm_uid,
            "vm_name": self.vm_name,
            "mac": self.mac,
            "ports": [p.to_dict() for p in self.ports],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RuntimeStatus:
        return cls(
            supervisor_pid=int(data["supervisor_pid"]),
            vmm=str(data["vmm"]),
            state=RuntimeState(data.get("state", "running")),
            started_at=float(data.get("started_at", 0.0)),
            vmm_pid=data.get("vmm_pid"),
            vmm_started_at=data.get("vmm_started_at"),
            ip_addresses=tuple(data.get("ip_addresses", ())),
            netns=data.get("netns"),
            tap=data.get("tap"),
            network=str(data.get("network", "none")),
            vm_uid=str(data.get("vm_uid", "")),
            vm_name=str(data.get("vm_name", "")),
            mac=str(data.get("mac", "")),
            ports=tuple(PortMapping.from_dict(p) for p in data.get("ports", ())),
        )


def write_runtime(vm_dir: Path, status: RuntimeStatus) -> None:
    write_json_atomic(vm_dir / RUNTIME_FILE, status.to_dict())


def is_running(vm_dir: Path) -> bool:
    """True while the VM's supervisor holds the lock on vm_dir (DESIGN.md "State and truth")."""
    return is_locked(vm_dir)


def runtime_status(vm_dir: Path) -> RuntimeStatus | None:
    """The supervisor's runtime.json while it runs; None when the VM does not run. Here, not in
    control.py: ps, inspect and exec need only this, without control's imports (~40 ms)."""
    status = read_runtime(vm_dir)
    if status is None or not is_locked(vm_dir):
        return None
    return status


def read_runtime(vm_dir: Path) -> RuntimeStatus | None:
    """runtime.json as written, whether or not its supervisor still lives; None if absent."""
    try:
        return RuntimeStatus.from_dict(json.loads((vm_dir / RUNTIME_FILE).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pid_in_dir(pid: int, vm_dir: Path) -> bool:
    """True when process ``pid`` lives with vm_dir as its working directory: the supervisor
    and its VMM both run there, which tells them from an unrelated process that reused a pid."""
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return cwd == str(vm_dir.resolve())
