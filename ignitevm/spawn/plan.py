"""LaunchPlan: everything the supervisor needs, as a plain-JSON record in ``vm_dir/launch.json``
(``ignitevm.records``: no pydantic, so the long-lived supervisor process stays small)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ignitevm.errors import IgniteError
from ignitevm.fsutil import PRIVATE_MODE
from ignitevm.layout import VMFiles
from ignitevm.network.base import DEFAULT_ID_PREFIX, NetworkRequest, PluginName, PortMapping
from ignitevm.records import RecordError, read_record, write_record
from ignitevm.vmm.base import MachineSpec, VMMName

DEFAULT_CONSOLE_LIMIT = 1 << 20
DEFAULT_BOOT_MARKER = "ignitevm-init: exec "


@dataclass(frozen=True)
class LaunchPlan:
    machine: MachineSpec  # what the VMM runs
    vmm: VMMName = VMMName.QEMU
    network: PluginName = PluginName.NONE
    ports: tuple[PortMapping, ...] = ()
    console_limit_bytes: int = DEFAULT_CONSOLE_LIMIT
    boot_marker: str = DEFAULT_BOOT_MARKER
    stop_timeout: float = 30.0  # SIGTERM to the supervisor: power button, then hard stop
    jail: bool = True  # run the VMM in its jail (docs/runtime.md "The jail"), when root
    id_prefix: str = DEFAULT_ID_PREFIX  # the VM's recorded status.idPrefix (network names)
    interfaces: tuple[str, ...] = ()  # extra interfaces to join (network/multinet.py)

    @property
    def vm_dir(self) -> Path:
        return self.machine.vm_dir

    @property
    def uid(self) -> str:
        return self.machine.uid

    @property
    def name(self) -> str:
        return self.machine.name

    def network_request(self) -> NetworkRequest:
        m = self.machine
        return NetworkRequest(vm_uid=m.uid, vm_name=m.name, vm_dir=m.vm_dir, mac=m.mac,
                              ports=self.ports, id_prefix=self.id_prefix,
                              interfaces=self.interfaces)  # fmt: skip

    def write(self) -> Path:
        path = self.vm_dir / VMFiles.PLAN
        write_record(path, self, mode=PRIVATE_MODE)  # the kernel command line, paths: root's
        return path


def read_plan(vm_dir: Path) -> LaunchPlan:
    """Read ``vm_dir/launch.json`` or raise IgniteError."""
    path = vm_dir / VMFiles.PLAN
    try:
        return read_record(LaunchPlan, path)
    except (OSError, RecordError) as exc:
        raise IgniteError(
            f"cannot read the launch plan {path}: {exc}",
            hint="start the VM again with ignite start",
        ) from exc
