"""The per-VM supervisor (Ignite's ignite-spawn): network, VMM, console, stop, cleanup.

It runs detached (``python -m ignitevm.spawn VM_DIR``) and holds flock on vm_dir for its whole
life, which is what "running" means. Single-threaded: one selector loop relays the console."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import selectors
import signal
import time
from dataclasses import replace
from types import FrameType
from typing import Any

from ignitevm import proc
from ignitevm.errors import IgniteError
from ignitevm.layout import VMFiles
from ignitevm.network.base import Attachment, NetworkPlugin
from ignitevm.spawn.plan import LaunchPlan
from ignitevm.spawn.protocol import REPRESS_INTERVAL, Ready
from ignitevm.spawn.relay import MAX_INPUT_BACKLOG, Clients, ConsoleLog, listen_unix
from ignitevm.spawn.runtime import (
    RuntimeState,
    RuntimeStatus,
    remove_runtime_files,
    write_runtime,
)
from ignitevm.vmm.base import with_guest_ip
from ignitevm.vmm.driver import VMMDriver

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Any:
    """A preexec_fn: the child gets SIGKILL when the supervisor dies, even by kill -9. The flag
    survives ``ip netns exec`` exec'ing into QEMU (no set-uid binary in between)."""
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the supervisor died before prctl took effect
            os._exit(1)

    return preexec


class Supervisor:
    """Runs one VM: ``plan`` says what, ``driver`` how to run its VMM, ``plugin`` its network
    (``__main__`` picks both by name; tests pass fakes, as httpx tests pass a transport)."""

    def __init__(
        self, plan: LaunchPlan, ready: Ready, driver: VMMDriver, plugin: NetworkPlugin
    ) -> None:
        self.plan = plan
        self.vm_dir = plan.vm_dir
        self.ready = ready
        self.driver = driver
        self.plugin = plugin
        self.sel = selectors.DefaultSelector()
        self.clients = Clients(self.sel)
        self.vmm: proc.Popen[bytes] | None = None
        self.status: RuntimeStatus | None = None
        self._to_vmm = bytearray()
        self._stop_requested = False
        self._stop_deadline: float | None = None  # graceful stop gives up at this time
        self._kill_deadline: float | None = None  # QMP quit was sent; SIGKILL at this time
        self._next_press: float | None = None  # press the power button again at this time
        self._vmm_gone = False

    # ---- lifecycle -------------------------------------------------------------------------

    def run(self) -> int:
        """Set up, run the VM until it exits, clean up. Returns the supervisor's exit code."""
        # A stop asked for while the network is set up is carried out once QEMU runs.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        remove_runtime_files(self.vm_dir)
        req = replace(self.plan.network_request(), on_wait=self._waiting)
        self.status = RuntimeStatus(
            supervisor_pid=os.getpid(),
            vmm=str(self.plan.vmm),
            state=RuntimeState.STARTING,
            started_at=time.time(),
            network=str(self.plan.network),
            vm_uid=self.plan.uid,
            vm_name=self.plan.name,
            mac=self.plan.machine.mac,
            ports=self.plan.ports,
            id_prefix=self.plan.id_prefix,
        )
        # Written before the network is touched, so a crash from here on leaves a record.
        write_runtime(self.vm_dir, self.status)
        try:
            att = self.plugin.attach(req)
            try:
                return self._run_vm(att)
            finally:
                self._detach()
        except BaseException as exc:
            log.error("%s", exc)
            self.ready.error(exc)
            return 1
        finally:
            remove_runtime_files(self.vm_dir)
            log.info("supervisor exits")

    def _waiting(self, what: str, timeout: float) -> bool:
        """The network waits for the user (network/base.py on_wait): the launcher hears it
        once; a stop asked for meanwhile ends the wait."""
        self.ready.waiting(what, timeout)
        return not self._stop_requested

    def _detach(self) -> None:
        try:
            self.plugin.detach(self.plan.network_request())
        except Exception:
            log.exception("network detach failed")

    def _run_vm(self, att: Attachment) -> int:
        console = ConsoleLog(self.vm_dir / VMFiles.CONSOLE, self.plan.console_limit_bytes)
        listener = listen_unix(self.vm_dir / VMFiles.ATTACH_SOCKET)
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        old_wakeup = signal.set_wakeup_fd(wake_w)
        try:
            vmm_started_at = time.time()
            vmm = self._start_vmm(att)
            assert self.status is not None
            self.status = replace(
                self.status,
                state=RuntimeState.RUNNING,
                vmm_pid=vmm.pid,
                vmm_started_at=vmm_started_at,
                ip_addresses=(att.ip,) if att.ip else (),
                netns=att.netns,
                tap=att.tap,
            )
            write_runtime(self.vm_dir, self.status)
            self.ready.ok(vmm.pid)
            self.sel.register(wake_r, selectors.EVENT_READ, ("signal", None))
            self.sel.register(listener, selectors.EVENT_READ, ("listen", listener))
            self._loop(vmm, console)
            return 0
        finally:
            self._reap()
            self.clients.close_all()
            listener.close()
            console.close()
            signal.set_wakeup_fd(old_wakeup)
            os.close(wake_r)
            os.close(wake_w)

    def _start_vmm(self, att: Attachment) -> proc.Popen[bytes]:
        spec = self.plan.machine
        spec = replace(spec, cmdline=with_guest_ip(spec.cmdline, att, self.plan.name, spec.mac))
        argv = self.driver.argv(spec, att)
        if att.netns is not None:
            argv = [proc.require_tool("ip"), "netns", "exec", att.netns, *argv]
        log.info("starting %s", " ".join(argv))
        self.vmm = vmm = proc.start(
            argv,
            stdin=proc.PIPE,
            stdout=proc.PIPE,
            cwd=self.vm_dir,
            close_fds=True,
            preexec_fn=_die_with_parent(),
        )
        assert vmm.stdin is not None and vmm.stdout is not None
        os.set_blocking(vmm.stdin.fileno(), False)
        os.set_blocking(vmm.stdout.fileno(), False)
        self.driver.wait_ready(vmm, spec, att)
        return vmm

    def _reap(self) -> None:
        """Make sure the VMM is gone and log how it ended."""
        vmm = self.vmm
        if vmm is None:
            return
        if vmm.poll() is None:
            try:
                vmm.wait(timeout=5)
            except proc.TimeoutExpired:
                log.warning("VMM %d did not exit: killing it", vmm.pid)
                vmm.kill()
                vmm.wait()
        for pipe in (vmm.stdin, vmm.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        log.info("VMM %d exited with code %s", vmm.pid, vmm.returncode)

    # ---- the loop --------------------------------------------------------------------------

    def _loop(self, vmm: proc.Popen[bytes], console: ConsoleLog) -> None:
        assert vmm.stdout is not None and vmm.stdin is not None
        out_fd, in_fd = vmm.stdout.fileno(), vmm.stdin.fileno()
        self.sel.register(out_fd, selectors.EVENT_READ, ("vmm", None))
        while not self._vmm_gone:
            for key, _ in self.sel.select(self._timeout()):
                kind, obj = key.data
                if kind == "vmm":
                    self._on_vmm_output(out_fd, console)
                elif kind == "vmm-in":
                    self._flush_input(in_fd)
                elif kind == "listen":
                    self._accept(obj)
                elif kind == "client":
                    self._on_client(obj, key.events, in_fd)
                elif kind == "signal":
                    self._drain_wakeup(key.fd)
            if self._stop_requested:
                self._begin_stop()
            self._check_deadlines()
            if not self._vmm_gone and vmm.poll() is not None:
                self._drain_output(out_fd, console)
                self._vmm_gone = True

    def _timeout(self) -> float:
        now = time.monotonic()
        # The graceful deadline is spent once the hard stop began.
        stop = self._stop_deadline if self._kill_deadline is None else None
        pending = (stop, self._kill_deadline, self._next_press)
        deadlines = [d for d in pending if d is not None]
        return max(0.0, min([1.0, *(d - now for d in deadlines)]))

    def _on_vmm_output(self, fd: int, console: ConsoleLog) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not data:  # QEMU closed its stdout: it has exited
            self.sel.unregister(fd)
            self._vmm_gone = True
            return
        console.write(data)
        self.clients.broadcast(data)

    def _drain_output(self, fd: int, console: ConsoleLog) -> None:
        while True:
            try:
                data = os.read(fd, 65536)
            except (BlockingIOError, OSError):
                return
            if not data:
                return
            console.write(data)
            self.clients.broadcast(data)

    def _accept(self, listener: Any) -> None:
        try:
            sock, _ = listener.accept()
        except BlockingIOError:
            return
        self.clients.add(sock)
        log.info("attach client connected (%d)", len(self.clients))

    def _on_client(self, sock: Any, events: int, in_fd: int) -> None:
        if events & selectors.EVENT_WRITE:
            self.clients.flush(sock)
        if events & selectors.EVENT_READ:
            data = self.clients.receive(sock)
            if data:
                self._to_vmm += data[: MAX_INPUT_BACKLOG - len(self._to_vmm)]
                self._flush_input(in_fd)

    def _flush_input(self, fd: int) -> None:
        try:
            n = os.write(fd, self._to_vmm) if self._to_vmm else 0
        except BlockingIOError:
            n = 0
        except OSError:  # QEMU is gone; its stdout EOF ends the loop
            self._to_vmm.clear()
            n = 0
        del self._to_vmm[:n]
        registered = fd in self.sel.get_map()
        if self._to_vmm and not registered:
            self.sel.register(fd, selectors.EVENT_WRITE, ("vmm-in", None))
        elif not self._to_vmm and registered:
            self.sel.unregister(fd)

    # ---- stopping --------------------------------------------------------------------------

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stop_deadline is not None:
            self._kill_deadline = self._kill_deadline or time.monotonic()  # second signal
        self._stop_requested = True

    @staticmethod
    def _drain_wakeup(fd: int) -> None:
        try:
            while os.read(fd, 512):
                pass
        except BlockingIOError:
            pass

    def _begin_stop(self) -> None:
        """Graceful stop: the ACPI power button, then a hard stop after plan.stop_timeout."""
        self._stop_requested = False
        if self._stop_deadline is not None:
            return
        self._stop_deadline = time.monotonic() + self.plan.stop_timeout
        if self.status is not None:
            self.status = replace(self.status, state=RuntimeState.STOPPING)
            write_runtime(self.vm_dir, self.status)
        try:
            self.driver.powerdown()
            log.info("sent the ACPI power button; hard stop in %g s", self.plan.stop_timeout)
            self._next_press = time.monotonic() + REPRESS_INTERVAL
        except IgniteError as exc:
            log.warning("graceful stop impossible (%s): stopping hard", exc)
            self._stop_deadline = time.monotonic()

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        if self._vmm_gone or self.vmm is None:
            return
        if self._kill_deadline is None and self._next_press is not None and now >= self._next_press:
            self._next_press = now + REPRESS_INTERVAL
            with contextlib.suppress(IgniteError):
                self.driver.powerdown()
        if self._kill_deadline is not None and now >= self._kill_deadline:
            log.warning("VMM %d still runs: SIGKILL", self.vmm.pid)
            self.vmm.kill()
            self._kill_deadline = now + 3600  # once
            self._next_press = None
        elif (
            self._stop_deadline is not None
            and now >= self._stop_deadline
            and self._kill_deadline is None
        ):
            log.warning("the guest did not power off in time: hard stop")
            self._next_press = None
            try:
                self.driver.hard_stop(self.vmm.pid)
            except IgniteError as exc:
                log.warning("%s hard stop failed: %s", self.driver.name, exc)
            self._kill_deadline = now + self.driver.hard_stop_grace
