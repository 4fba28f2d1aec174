"""What differs between the VMMs the supervisor runs: the command line, when the machine counts
as started, the graceful stop (power button) and the hard stop."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

from ignitevm import proc
from ignitevm.errors import IgniteError
from ignitevm.network.base import Attachment
from ignitevm.vmm.base import MachineSpec, VMMName
from ignitevm.vmm.qemu import build_qemu_argv

QMP_WAIT = 10.0  # QEMU creates its QMP socket right after parsing its command line
API_WAIT = 10.0  # Firecracker binds its API socket at once


class VMMDriver(Protocol):
    name: str
    hard_stop_grace: float  # seconds between hard_stop() and SIGKILL

    def argv(self, spec: MachineSpec, att: Attachment) -> list[str]: ...

    def wait_ready(self, vmm: proc.Popen[bytes], spec: MachineSpec, att: Attachment) -> None:
        """Returns once the machine runs; raises IgniteError (the VMM exited or refused)."""

    def powerdown(self) -> None:
        """The ACPI power button / Ctrl-Alt-Del; IgniteError when it cannot be sent."""

    def hard_stop(self, vmm: proc.Popen[bytes]) -> None: ...


class QemuDriver:
    name = "QEMU"
    hard_stop_grace = 3.0

    def __init__(self, vm_dir: Path) -> None:
        self.vm_dir = vm_dir

    def argv(self, spec: MachineSpec, att: Attachment) -> list[str]:
        argv = build_qemu_argv(spec, att)
        argv[0] = proc.require_tool(argv[0])
        return argv

    def wait_ready(self, vmm: proc.Popen[bytes], spec: MachineSpec, att: Attachment) -> None:
        """A QEMU that rejects its command line or cannot load the kernel exits at once: report
        that as a start failure rather than as a VM that stopped. QMP answers only once the
        machine is set up and its main loop runs."""
        from ignitevm.vmm.qemu import QMP_SOCKET
        from ignitevm.vmm.qmp import QMPClient, QMPError

        deadline = time.monotonic() + QMP_WAIT
        qmp = self.vm_dir / QMP_SOCKET
        while True:
            code = vmm.poll()
            if code is not None:
                raise IgniteError(
                    f"QEMU exited with code {code} before the VM started",
                    hint=f"see QEMU's messages in {self.vm_dir / 'supervisor.log'}",
                )
            if time.monotonic() > deadline:
                raise IgniteError(f"QEMU did not answer on QMP in {QMP_WAIT:g} s")
            if qmp.exists():
                try:
                    with QMPClient(qmp, timeout=max(0.1, deadline - time.monotonic())) as c:
                        c.execute("query-status")
                    return
                except QMPError:
                    pass  # it exited while we connected: reported above
            time.sleep(0.005)

    def _qmp(self, command: str, timeout: float) -> None:
        from ignitevm.vmm.qemu import QMP_SOCKET
        from ignitevm.vmm.qmp import QMPClient

        with QMPClient(self.vm_dir / QMP_SOCKET, timeout=timeout) as qmp:
            qmp.execute(command)

    def powerdown(self) -> None:
        self._qmp("system_powerdown", 2.0)

    def hard_stop(self, vmm: proc.Popen[bytes]) -> None:
        self._qmp("quit", 1.0)


class FirecrackerDriver:
    """Firecracker is configured over its API after it starts, then InstanceStart'ed."""

    name = "Firecracker"
    hard_stop_grace = 0.0  # it has no "quit": the hard stop is SIGKILL

    def __init__(self, vm_dir: Path) -> None:
        self.vm_dir = vm_dir

    def argv(self, spec: MachineSpec, att: Attachment) -> list[str]:
        from ignitevm.vmm.firecracker import (
            FIRECRACKER_BINARY,
            build_firecracker_argv,
            prepare_files,
        )

        prepare_files(self.vm_dir)
        return build_firecracker_argv(spec, proc.require_tool(FIRECRACKER_BINARY))

    def wait_ready(self, vmm: proc.Popen[bytes], spec: MachineSpec, att: Attachment) -> None:
        from ignitevm.vmm import firecracker as fc

        try:
            client = fc.wait_for_api(
                self.vm_dir / fc.API_SOCKET, API_WAIT, alive=lambda: vmm.poll() is None
            )
            client.configure(fc.config_calls(spec, att))
            client.call(fc.INSTANCE_START)
        except IgniteError as exc:
            code = vmm.poll()
            if code is None:  # it waits for more configuration forever: do not leave it
                vmm.kill()
            elif not isinstance(exc, fc.FirecrackerError) or "exited" in str(exc):
                exc = IgniteError(
                    f"Firecracker exited with code {code} before the VM started",
                    hint=f"see {self.vm_dir / fc.LOG_FILE} and supervisor.log",
                )
            raise exc from None

    def powerdown(self) -> None:
        from ignitevm.vmm.firecracker import send_ctrl_alt_del

        send_ctrl_alt_del(self.vm_dir)

    def hard_stop(self, vmm: proc.Popen[bytes]) -> None:
        vmm.kill()


def driver_for(vmm: str, vm_dir: Path) -> VMMDriver:
    if vmm == VMMName.QEMU:
        return QemuDriver(vm_dir)
    if vmm == VMMName.FIRECRACKER:
        return FirecrackerDriver(vm_dir)
    raise IgniteError(f"unknown VMM {vmm!r}", hint="use qemu or firecracker")
