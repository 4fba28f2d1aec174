"""The VMM driver contract: everything that differs between the VMMs the supervisor runs.

A driver builds the command line, tells when the machine counts as started, presses the power
button, stops hard (from the supervisor or from any other process: ``ignite kill``) and names
the files a run leaves in the VM's directory. Nothing outside ``vmm/`` knows QEMU from
Firecracker (docs/runtime.md "VMM drivers")."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ignitevm.errors import IgniteError
from ignitevm.vmm.base import VMMName

if TYPE_CHECKING:
    from subprocess import Popen

    from ignitevm.network.base import Attachment
    from ignitevm.vmm.base import MachineSpec, SaveRequest, SaveResult
    from ignitevm.vmm.confine import Jail


class VMMDriver(Protocol):
    name: str
    # seconds between hard_stop() and SIGKILL: a QMP quit may need a moment
    hard_stop_grace: float
    # files in vm_dir that belong to one run (sockets), removed when it ends
    runtime_files: tuple[str, ...]

    def start(self, spec: MachineSpec, att: Attachment, jail: Jail | None) -> Popen[bytes]:
        """Start the VMM: stdin and stdout are pipes (the serial console), stderr is inherited
        (supervisor.log); in ``jail`` when given (else as this process, dying with it)."""

    def wait_ready(self, vmm: Popen[bytes], spec: MachineSpec, att: Attachment) -> None:
        """Returns once the machine runs; raises IgniteError (the VMM exited or refused)."""

    def powerdown(self) -> None:
        """The ACPI power button / Ctrl-Alt-Del; IgniteError when it cannot be sent."""

    def hard_stop(self, pid: int) -> None:
        """Stop the VMM ``pid`` now (QMP quit, or SIGKILL); IgniteError when it cannot."""

    @staticmethod
    def remove_run_files(vm_dir: Path) -> None:
        """Remove what a run of this VMM leaves in vm_dir (``runtime_files`` and more)."""

    def pause(self) -> None:
        """Freeze the vCPUs (memory kept); IgniteError when the VMM refuses."""

    def unpause(self) -> None: ...

    def save(self, req: SaveRequest) -> SaveResult:
        """Save the running machine (docs/snapshots.md); IgniteError leaves it running."""
        ...


_DRIVERS = {
    VMMName.QEMU: ("ignitevm.vmm.qemu", "QemuDriver"),
    VMMName.FIRECRACKER: ("ignitevm.vmm.firecracker", "FirecrackerDriver"),
}


def driver_class(vmm: str) -> type[VMMDriver]:
    try:
        module, name = _DRIVERS[VMMName(vmm)]
    except ValueError:
        raise IgniteError(f"unknown VMM {vmm!r}", hint="use qemu or firecracker") from None
    cls: type[VMMDriver] = getattr(import_module(module), name)
    return cls


def driver_for(vmm: str, vm_dir: Path) -> VMMDriver:
    """The driver of ``vmm`` (qemu | firecracker) for the VM in ``vm_dir``."""
    return driver_class(vmm)(vm_dir)  # type: ignore[call-arg]


def all_runtime_files() -> tuple[str, ...]:
    """Every VMM's run files: what tells a cleanup that a run left something."""
    return tuple(f for vmm in _DRIVERS for f in driver_class(vmm).runtime_files)


def remove_all_run_files(vm_dir: Path) -> None:
    """What any VMM's run left in vm_dir (a cleanup may not know which VMM ran)."""
    for vmm in _DRIVERS:
        driver_class(vmm).remove_run_files(vm_dir)
