"""The QEMU driver (docs/runtime.md "VMM drivers"): starting QEMU in its jail with everything it
needs as open file descriptors, its readiness, power button and hard stop."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ignitevm import proc
from ignitevm.errors import IgniteError
from ignitevm.layout import VMFiles
from ignitevm.network.base import Attachment
from ignitevm.vmm.base import Accel, MachineSpec, SaveRequest, SaveResult, resolve_accel
from ignitevm.vmm.qemuargs import QMP_SOCKET, DiskFds, GuestMemory, build_qemu_argv

if TYPE_CHECKING:
    from subprocess import Popen

    from ignitevm.vmm.confine import Jail

QMP_WAIT = 10.0  # QEMU creates its QMP socket right after parsing its command line


class QemuDriver:
    """QEMU: started with its whole configuration; QMP for the power button and ``quit``."""

    name = "QEMU"
    hard_stop_grace = 3.0
    runtime_files = (QMP_SOCKET,)

    def __init__(self, vm_dir: Path) -> None:
        self.vm_dir = vm_dir
        self.memory_fd: int | None = None  # the guest's RAM, held for the run (snapshots)
        # whether memory_fd holds the guest's live RAM (mapped shared), or only the image a
        # copy-on-write mapping started from (a restore: the live pages are QEMU's own)
        self.memory_live = True
        self.agent: socket.socket | None = None  # the host side of the guest agent's port

    def argv(
        self, spec: MachineSpec, att: Attachment, *, qmp_fd: int, tap_fds: tuple[int, ...],
        disk_fds: DiskFds, agent_fd: int, memory: GuestMemory,
    ) -> list[str]:  # fmt: skip
        argv = build_qemu_argv(spec, att, qmp_fd=qmp_fd, tap_fds=tap_fds, disk_fds=disk_fds,
                               agent_fd=agent_fd, memory=memory, sandbox=True)  # fmt: skip
        argv[0] = proc.require_tool(argv[0])
        return argv

    def start(self, spec: MachineSpec, att: Attachment, jail: Jail | None) -> Popen[bytes]:
        """QEMU gets its QMP socket, the agent's port, its tap, its disks and its RAM (a memfd
        this driver keeps: ``memory_fd``) as inherited fds (it opens none of them itself: a
        jailed QEMU sees neither /dev/net/tun nor the state directory), runs in a network
        namespace of its own unless it does user-mode networking (whose forwards bind on the
        host), and under QEMU's seccomp sandbox."""
        from ignitevm.network.tap import open_tap
        from ignitevm.vmm.jail import die_with_parent, preexec
        from ignitevm.vmm.qmp import listen_unix

        fds: list[int] = []
        disks = DiskFds(spec.disks)
        try:
            self.memory_fd = self._memory(spec)
            fds.append(listen_unix(self.vm_dir / QMP_SOCKET).detach())
            self.agent, qemu_end = socket.socketpair()
            fds.append(qemu_end.detach())
            taps = [att.tap, *(nic.tap for nic in att.extra_nics)] if att.tap else []
            for name in taps:
                fds.append(open_tap(att.netns, name))  # in fds at once: closed on failure
            tap_fds = tuple(fds[2:])
            memory = GuestMemory(self.memory_fd, shared=self.memory_live,
                                 incoming=spec.resume is not None)  # fmt: skip
            argv = self.argv(spec, att, qmp_fd=fds[0], tap_fds=tap_fds, disk_fds=disks,
                             agent_fd=fds[1], memory=memory)  # fmt: skip
            if jail is None:
                run_first = die_with_parent()
            else:
                from ignitevm.vmm.confine import jail_spec

                accel = resolve_accel(spec.accel)
                js = jail_spec(jail, spec, new_netns=not att.user_net, kvm=accel == Accel.KVM)
                run_first = preexec(js)
            return proc.start(argv, stdin=proc.PIPE, stdout=proc.PIPE, cwd=self.vm_dir,
                              close_fds=True, pass_fds=(*fds, *disks.fds, self.memory_fd),
                              preexec_fn=run_first)  # fmt: skip
        finally:
            disks.close()  # QEMU holds its copies
            for fd in fds:
                os.close(fd)

    def _memory(self, spec: MachineSpec) -> int:
        """The guest's RAM: empty for a boot, or for a resume whose RAM is in the state stream;
        a suspended VM's own copy of its image; a snapshot's image, sealed and mapped
        copy-on-write, shared with a VM restored from the same image when there is one (only
        a sealed memfd: no VM may see another's live RAM)."""
        from ignitevm.vmm import guestmem

        size, name = spec.memory_mib << 20, f"ignite-{spec.uid}"
        resume = spec.resume
        self.memory_live = resume is None or not resume.private or resume.memory_in_state
        if resume is None or resume.memory_in_state:
            return guestmem.new_memory(name, size)
        if not resume.private:
            return guestmem.load_memory(resume.memory, size, name, seal=False)
        if resume.share_from is not None:
            try:
                fd = os.open(resume.share_from, os.O_RDONLY | os.O_CLOEXEC)
                if os.fstat(fd).st_size == size and guestmem.is_sealed(fd):
                    return fd
                os.close(fd)
            except OSError:
                pass  # the VM to share with is gone: load the image
        return guestmem.load_memory(resume.memory, size, name)

    def wait_ready(self, vmm: Popen[bytes], spec: MachineSpec, att: Attachment) -> None:
        """A QEMU that rejects its command line or cannot load the kernel exits at once: report
        that as a start failure rather than as a VM that stopped. QMP answers only once the
        machine is set up and its main loop runs. A resumed machine loads its saved device
        state and runs on."""
        self._wait_for_qmp(vmm)
        if spec.resume is not None:
            from ignitevm.vmm.qemusnap import resume

            resume(self.vm_dir / QMP_SOCKET, spec.resume.state,
                   ignore_shared=not spec.resume.memory_in_state)  # fmt: skip

    def _wait_for_qmp(self, vmm: Popen[bytes]) -> None:
        from ignitevm.vmm.qmp import QMPClient, QMPError

        deadline = time.monotonic() + QMP_WAIT
        qmp = self.vm_dir / QMP_SOCKET
        while True:
            code = vmm.poll()
            if code is not None:
                raise IgniteError(
                    f"QEMU exited with code {code} before the VM started",
                    hint=f"see QEMU's messages in {self.vm_dir / VMFiles.SUPERVISOR_LOG}",
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

    def qmp(
        self, command: str, timeout: float, arguments: dict[str, object] | None = None
    ) -> object:
        from ignitevm.vmm.qmp import QMPClient

        with QMPClient(self.vm_dir / QMP_SOCKET, timeout=timeout) as client:
            return client.execute(command, arguments)

    def powerdown(self) -> None:
        self.qmp("system_powerdown", 2.0)

    def pause(self) -> None:
        self.qmp("stop", 5.0)

    def unpause(self) -> None:
        self.qmp("cont", 5.0)

    def save(self, req: SaveRequest) -> SaveResult:
        """Stop the vCPUs; freeze the disk's layer (when asked); the device state through
        QEMU's migration (its RAM, shared, skipped); the RAM from the memfd this driver holds,
        sparse; run on (or stay stopped for ``req.stop``, which quits QEMU after)."""
        from ignitevm.vmm import guestmem, qemusnap

        if self.memory_fd is None:
            raise IgniteError("this VM's QEMU has no RAM the host can save (an older start)",
                              hint="restart the VM, then snapshot it")  # fmt: skip
        started = time.monotonic()
        with qemusnap.paused(self.vm_dir / QMP_SOCKET, resume=not req.stop) as qmp:
            if req.freeze is not None:
                qemusnap.freeze_disk(qmp, req.freeze)
            fd = os.open(req.state, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                # RAM the host cannot read (a copy-on-write restore's) goes through the stream
                qemusnap.save_state(qmp, fd, ignore_shared=self.memory_live)
                os.fsync(fd)
                state_bytes = os.fstat(fd).st_size
            finally:
                os.close(fd)
            memory_bytes = 0
            if self.memory_live:
                size = os.fstat(self.memory_fd).st_size
                memory_bytes = guestmem.save_memory(self.memory_fd, size, req.memory)
            if req.stop:
                qmp.execute("quit")
        return SaveResult(time.monotonic() - started, state_bytes, memory_bytes)

    def hard_stop(self, pid: int) -> None:
        self.qmp("quit", 1.0)

    @staticmethod
    def remove_run_files(vm_dir: Path) -> None:
        (vm_dir / QMP_SOCKET).unlink(missing_ok=True)
