"""The Firecracker provider: its command line, the API calls that configure one machine, and a
tiny HTTP/1.1 client for its API socket (``http.client`` over AF_UNIX: no new dependency)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from ignitevm import proc
from ignitevm.errors import IgniteError
from ignitevm.layout import VMFiles
from ignitevm.network.base import Attachment
from ignitevm.vmm import fcsnap
from ignitevm.vmm.base import MachineSpec, SaveRequest, SaveResult
from ignitevm.vmm.fcapi import (
    CTRL_ALT_DEL,
    INSTANCE_START,
    APICall,
    FirecrackerClient,
    FirecrackerError,
    wait_for_api,
)

if TYPE_CHECKING:
    from subprocess import Popen

    from ignitevm.vmm.confine import Jail

FIRECRACKER_BINARY = "firecracker"
API_SOCKET = VMFiles.FC_API_SOCKET
LOG_FILE = VMFiles.FC_LOG
METRICS_FILE = VMFiles.FC_METRICS
API_WAIT = 10.0  # Firecracker binds its API socket at once
# sockaddr_un.sun_path holds 108 bytes; a longer path is given relative to vm_dir (the cwd).
_MAX_SOCKET_PATH = 100
# Firecracker's ids (drives, NICs, the instance) allow letters, digits and underscores.
_ID = re.compile(r"^[A-Za-z0-9_]{1,64}$")
# i8042.nokbd (one of the TCG trims) would remove the keyboard controller that Firecracker's
# SendCtrlAltDel, the graceful stop, goes through; dumbkbd keeps it without the slow probe.
_CMDLINE_SWAPS = {"i8042.nokbd": "i8042.dumbkbd"}


def socket_arg(vm_dir: Path) -> str:
    path = str(vm_dir / API_SOCKET)
    return path if len(path) <= _MAX_SOCKET_PATH else API_SOCKET


def build_firecracker_argv(spec: MachineSpec, binary: str = FIRECRACKER_BINARY) -> list[str]:
    """Firecracker with its API socket in vm_dir. The logger is set on the command line, not
    over the API: until it is configured Firecracker logs to stdout, which is the serial
    console the supervisor records. The log file must exist (``prepare_files``)."""
    return [
        binary,
        "--api-sock", socket_arg(spec.vm_dir),
        "--id", spec.uid if _ID.match(spec.uid) else "ignite",
        "--log-path", str(spec.vm_dir / LOG_FILE),
        "--level", "Info",
        "--show-level",
    ]  # fmt: skip


def prepare_files(vm_dir: Path) -> None:
    """Empty log and metrics files (Firecracker opens them, it does not create them) and no
    socket left from an earlier run (binding would fail)."""
    for name in (LOG_FILE, METRICS_FILE):
        (vm_dir / name).write_bytes(b"")
    (vm_dir / API_SOCKET).unlink(missing_ok=True)


def firecracker_cmdline(cmdline: str) -> str:
    return " ".join(_CMDLINE_SWAPS.get(word, word) for word in cmdline.split())


def drive_id(index: int, serial: str | None) -> str:
    """The drive's id, which Firecracker's virtio-blk also answers as the disk's serial."""
    if serial and _ID.match(serial):
        return serial
    return f"disk{index}"


def config_calls(spec: MachineSpec, att: Attachment) -> list[APICall]:
    """The API requests that configure the machine, in order; InstanceStart comes after."""
    if spec.shares:
        raise IgniteError(
            "Firecracker has no 9p or virtio-fs device for the VM's host directories",
            hint="start it with --vmm qemu",
        )
    calls = [
        APICall("PUT", "/metrics", {"metrics_path": str(spec.vm_dir / METRICS_FILE)}),
        APICall(
            "PUT",
            "/machine-config",
            {"vcpu_count": spec.vcpus, "mem_size_mib": spec.memory_mib, "smt": False},
        ),
        APICall(
            "PUT",
            "/boot-source",
            {
                "kernel_image_path": str(spec.vmlinux),
                "initrd_path": str(spec.initrd),
                "boot_args": firecracker_cmdline(spec.cmdline),
            },
        ),
    ]
    for i, disk in enumerate(spec.disks):
        if disk.format != "raw":
            raise FirecrackerError(
                f"Firecracker takes raw disks only, not {disk.format} ({disk.path})",
                hint="Firecracker VMs use the overlay copy-on-write mode: recreate the VM",
            )
        ident = drive_id(i, disk.serial)
        # No root device: /init finds the disks by label, and is_root_device would append
        # root=/dev/vda to the command line.
        calls.append(
            APICall(
                "PUT",
                f"/drives/{ident}",
                {
                    "drive_id": ident,
                    "path_on_host": str(disk.path),
                    "is_root_device": False,
                    "is_read_only": disk.readonly,
                },
            )
        )
    if att.tap is not None:
        calls.append(
            APICall(
                "PUT",
                "/network-interfaces/eth0",
                {"iface_id": "eth0", "host_dev_name": att.tap, "guest_mac": spec.mac},
            )
        )
        for nic in att.extra_nics:  # annotated interfaces (docs/network.md)
            body = {"iface_id": nic.guest_name, "host_dev_name": nic.tap, "guest_mac": nic.mac}
            calls.append(APICall("PUT", f"/network-interfaces/{nic.guest_name}", body))
    elif att.user_net:
        raise FirecrackerError(
            "Firecracker has no user-mode networking",
            hint="use --network-plugin cni (or none) with --vmm firecracker",
        )
    return calls


def send_ctrl_alt_del(vm_dir: Path, timeout: float = 2.0) -> None:
    FirecrackerClient(vm_dir / API_SOCKET, timeout).call(CTRL_ALT_DEL)


class FirecrackerDriver:
    """Firecracker is configured over its API after it starts, then InstanceStart'ed."""

    name = "Firecracker"
    hard_stop_grace = 0.0  # it has no "quit": the hard stop is SIGKILL
    runtime_files = (API_SOCKET,)

    def __init__(self, vm_dir: Path) -> None:
        self.vm_dir = vm_dir
        self.inside: MachineSpec | None = None  # the machine as the jailed Firecracker sees it
        self.jail_uid: int | None = None
        self.process: Popen[bytes] | None = None

    def start(self, spec: MachineSpec, att: Attachment, jail: Jail | None) -> Popen[bytes]:
        """Firecracker opens the tap by name, so it runs in the VM's network namespace; in
        ``jail`` through Firecracker's own jailer (vmm/fcjailer.py)."""
        from ignitevm.vmm.jail import die_with_parent

        if jail is None:
            prepare_files(self.vm_dir)
            argv = build_firecracker_argv(spec, proc.require_tool(FIRECRACKER_BINARY))
            if att.netns is not None:
                argv = [proc.require_tool("ip"), "netns", "exec", att.netns, *argv]
        else:
            from ignitevm.vmm import fcjailer

            (self.vm_dir / API_SOCKET).unlink(missing_ok=True)
            self.inside = fcjailer.populate(spec, jail)
            self.jail_uid = jail.uid
            argv = fcjailer.jailer_argv(spec, jail, att.netns)
        self.process = proc.start(argv, stdin=proc.PIPE, stdout=proc.PIPE, cwd=self.vm_dir,
                                  close_fds=True, preexec_fn=die_with_parent())  # fmt: skip
        return self.process

    def wait_ready(self, vmm: Popen[bytes], spec: MachineSpec, att: Attachment) -> None:
        try:
            client = wait_for_api(
                self.vm_dir / API_SOCKET, API_WAIT, alive=lambda: vmm.poll() is None
            )
            if spec.resume is not None:  # a fresh Firecracker loads, before any configuration
                client.call(fcsnap.load_call(*self._resume_files(spec), att))
            else:
                client.configure(config_calls(self.inside or spec, att))
                client.call(INSTANCE_START)
        except IgniteError as exc:
            code = vmm.poll()
            if code is None:  # it waits for more configuration forever: do not leave it
                vmm.kill()
            elif not isinstance(exc, FirecrackerError) or "exited" in str(exc):
                exc = IgniteError(
                    f"Firecracker exited with code {code} before the VM started",
                    hint=f"see {self.vm_dir / LOG_FILE} and {VMFiles.SUPERVISOR_LOG}",
                )
            raise exc from None

    def _resume_files(self, spec: MachineSpec) -> tuple[str, str]:
        assert spec.resume is not None
        if self.jail_uid is None:
            return str(spec.resume.state), str(spec.resume.memory)
        from ignitevm.vmm.fcjailer import chroot_of

        return fcsnap.link_into(chroot_of(self.vm_dir, spec.uid), spec.resume, self.jail_uid)

    def powerdown(self) -> None:
        send_ctrl_alt_del(self.vm_dir)

    def pause(self) -> None:
        FirecrackerClient(self.vm_dir / API_SOCKET).call(fcsnap.pause_call(True))

    def unpause(self) -> None:
        FirecrackerClient(self.vm_dir / API_SOCKET).call(fcsnap.pause_call(False))

    def save(self, req: SaveRequest) -> SaveResult:
        """Firecracker's own snapshot (vmm/fcsnap.py); with ``req.stop`` it is killed after:
        it has no "quit"."""
        from ignitevm.vmm.fcjailer import chroot_of

        chroot = chroot_of(self.vm_dir, self.inside.uid) if self.inside else None
        client = FirecrackerClient(self.vm_dir / API_SOCKET, timeout=120.0)
        result = fcsnap.save(client, req, chroot)
        if req.stop and self.process is not None:
            self.process.kill()
        return result

    def hard_stop(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    @staticmethod
    def remove_run_files(vm_dir: Path) -> None:
        from ignitevm.vmm.fcjailer import remove_chroot

        (vm_dir / API_SOCKET).unlink(missing_ok=True)
        remove_chroot(vm_dir)
