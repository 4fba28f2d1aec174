"""LaunchPlan: everything the supervisor needs, as plain JSON in ``vm_dir/launch.json``.

Plain JSON and dataclasses (no pydantic) keep the long-lived supervisor process small."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ignitevm.errors import IgniteError
from ignitevm.fsutil import write_json_atomic
from ignitevm.network.base import NetworkRequest, PluginName, PortMapping
from ignitevm.vmm.base import Accel, Disk, MachineSpec, VMMName

PLAN_FILE = "launch.json"
CONSOLE_FILE = "console.log"
ATTACH_SOCKET = "attach.sock"
SUPERVISOR_LOG = "supervisor.log"
DEFAULT_CONSOLE_LIMIT = 1 << 20
DEFAULT_BOOT_MARKER = "ignitevm-init: exec "


@dataclass(frozen=True)
class LaunchPlan:
    uid: str
    name: str
    vm_dir: Path
    vcpus: int
    memory_mib: int
    vmlinux: Path
    initrd: Path
    cmdline: str
    disks: tuple[Disk, ...]
    mac: str
    accel: str = Accel.AUTO
    vmm: str = VMMName.QEMU
    network: str = PluginName.NONE
    ports: tuple[PortMapping, ...] = ()
    console_limit_bytes: int = DEFAULT_CONSOLE_LIMIT
    boot_marker: str = DEFAULT_BOOT_MARKER
    stop_timeout: float = 30.0  # SIGTERM to the supervisor: power button, then hard stop
    extra: dict[str, str] = field(default_factory=dict)  # free-form, kept for ops' records

    def machine_spec(self) -> MachineSpec:
        return MachineSpec(
            uid=self.uid,
            name=self.name,
            vm_dir=self.vm_dir,
            vcpus=self.vcpus,
            memory_mib=self.memory_mib,
            vmlinux=self.vmlinux,
            initrd=self.initrd,
            cmdline=self.cmdline,
            disks=self.disks,
            mac=self.mac,
            accel=self.accel,
        )

    def network_request(self) -> NetworkRequest:
        return NetworkRequest(
            vm_uid=self.uid, vm_name=self.name, vm_dir=self.vm_dir, mac=self.mac, ports=self.ports
        )

    @classmethod
    def from_spec(cls, spec: MachineSpec, **kwargs: Any) -> LaunchPlan:
        values = {f.name: getattr(spec, f.name) for f in fields(MachineSpec)}
        return cls(**values, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("vm_dir", "vmlinux", "initrd"):
            out[key] = str(out[key])
        out["disks"] = [
            {"path": str(d.path), "format": d.format, "readonly": d.readonly, "serial": d.serial}
            for d in self.disks
        ]
        out["ports"] = [p.to_dict() for p in self.ports]
        out["accel"], out["vmm"], out["network"] = str(self.accel), str(self.vmm), str(self.network)
        out["extra"] = dict(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LaunchPlan:
        values = dict(data)
        for key in ("vm_dir", "vmlinux", "initrd"):
            values[key] = Path(values[key])
        values["disks"] = tuple(
            Disk(Path(d["path"]), d["format"], bool(d.get("readonly", False)), d.get("serial"))
            for d in values.get("disks", ())
        )
        values["ports"] = tuple(PortMapping.from_dict(p) for p in values.get("ports", ()))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def write(self) -> Path:
        path = self.vm_dir / PLAN_FILE
        write_json_atomic(path, self.to_dict())
        return path


def read_plan(vm_dir: Path) -> LaunchPlan:
    """Read ``vm_dir/launch.json`` or raise IgniteError."""
    path = vm_dir / PLAN_FILE
    try:
        return LaunchPlan.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IgniteError(
            f"cannot read the launch plan {path}: {exc}",
            hint="start the VM again with ignite start",
        ) from exc
