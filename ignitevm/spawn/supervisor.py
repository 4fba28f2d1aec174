"""The per-VM supervisor (Ignite's ignite-spawn): network, VMM, console, stop, cleanup.

It runs detached (``python -m ignitevm.spawn VM_DIR``) and holds flock on vm_dir for its whole
life, which is what "running" means. Single-threaded: one selector loop relays the console."""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import time
from dataclasses import replace
from typing import Any

from ignitevm import proc
from ignitevm.layout import VMFiles
from ignitevm.network.base import Attachment, NetworkPlugin
from ignitevm.spawn.plan import LaunchPlan
from ignitevm.spawn.protocol import REPRESS_INTERVAL, Ready
from ignitevm.spawn.relay import ConsoleLog, ConsoleRelay
from ignitevm.spawn.runtime import (
    LastRun,
    RuntimeState,
    RuntimeStatus,
    remove_runtime_files,
    vmm_outcome,
    write_last_run,
    write_runtime,
)
from ignitevm.spawn.stopping import StopSequence
from ignitevm.vmm.base import with_guest_ip
from ignitevm.vmm.confine import Jail, confine, release
from ignitevm.vmm.driver import VMMDriver

log = logging.getLogger(__name__)

IDENT_TIMEOUT = 30.0  # the guest sets its address, MAC and hostname (busybox forks, under TCG)


class Supervisor:
    """Runs one VM: ``plan`` says what, ``driver`` how to run its VMM, ``plugin`` its network
    (``__main__`` picks both by name; tests pass fakes, as httpx tests pass a transport)."""

    def __init__(
        self,
        plan: LaunchPlan,
        ready: Ready,
        driver: VMMDriver,
        plugin: NetworkPlugin,
        repress: float = REPRESS_INTERVAL,
    ) -> None:
        self.plan = plan
        self.vm_dir = plan.vm_dir
        self.ready = ready
        self.driver = driver
        self.plugin = plugin
        self.jail: Jail | None = None
        self.sel = selectors.DefaultSelector()
        self.vmm: proc.Popen[bytes] | None = None
        self.status: RuntimeStatus | None = None
        self.stop = StopSequence(driver, plan.stop_timeout, lambda: self._record("stopping"),
                                 repress)  # fmt: skip

    # ---- lifecycle -------------------------------------------------------------------------

    def run(self) -> int:
        """Set up, run the VM until it exits, clean up. Returns the supervisor's exit code."""
        # A stop asked for while the network is set up is carried out once QEMU runs.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: self.stop.signal())
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
        try:
            self._confine()
            # Written before the network is touched, so a crash from here on leaves a record.
            write_runtime(self.vm_dir, self.status)
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
            self._record_end()
            if self.jail is not None:
                release(self.jail)
            remove_runtime_files(self.vm_dir)
            log.info("supervisor exits")

    def _record_end(self) -> None:
        """How the run ended, before runtime.json goes (a crash in between leaves the run
        "lost" to the cleanup, which is what it then is)."""
        code = self.vmm.returncode if self.vmm is not None else None
        if code is None or self.status is None:
            return  # the VMM never ran
        suspended = self.status.state == RuntimeState.SUSPENDED
        outcome = vmm_outcome(code, signalled=self.stop.stop_deadline is not None,
                              suspended=suspended)  # fmt: skip
        record = LastRun(outcome, self.status.started_at, time.time(), code)
        try:
            write_last_run(self.vm_dir, record)
        except OSError as exc:
            log.warning("cannot record how the run ended: %s", exc)

    def _confine(self) -> None:
        """The VMM's jail, when the plan asks for one (docs/runtime.md "The jail"); its uid and
        cgroups and the shares it was given go into runtime.json, so a cleanup after kill -9
        undoes them too."""
        if not self.plan.jail:
            return
        m = self.plan.machine
        self.jail = confine(m, readable=[m.initrd])
        if self.jail is not None and self.status is not None:
            self.status = replace(self.status, jail_uid=self.jail.uid,
                                  cgroups=self.jail.cgroup_procs,
                                  shares=self.jail.granted)  # fmt: skip

    def _waiting(self, what: str, timeout: float) -> bool:
        """The network waits for the user (network/base.py on_wait): the launcher hears it
        once; a stop asked for meanwhile ends the wait."""
        self.ready.waiting(what, timeout)
        return not self.stop.requested

    def _detach(self) -> None:
        try:
            self.plugin.detach(self.plan.network_request())
        except Exception:
            log.exception("network detach failed")

    def _run_vm(self, att: Attachment) -> int:
        from ignitevm.vmm.qmp import listen_unix

        log_file = ConsoleLog(self.vm_dir / VMFiles.CONSOLE, self.plan.console_limit_bytes)
        attach = listen_unix(self.vm_dir / VMFiles.ATTACH_SOCKET)
        console = ConsoleRelay(self.sel, log_file, attach)
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        old_wakeup = signal.set_wakeup_fd(wake_w)
        extras: list[Any] = []
        try:
            vmm_started_at = time.time()
            vmm = self._start_vmm(att)
            extras = self._serve(att)
            assert self.status is not None
            self.status = replace(
                self.status,
                state=RuntimeState.RUNNING,
                vmm_pid=vmm.pid,
                vmm_started_at=vmm_started_at,
                ip_addresses=(att.ip,) if att.ip else (),
                netns=att.netns,
                tap=att.tap,
                memory_fd=getattr(self.driver, "memory_fd", None),
                snapshot=self.plan.machine.resume.tag if self.plan.machine.resume else "",
            )
            write_runtime(self.vm_dir, self.status)
            self.ready.ok(vmm.pid)
            self.sel.register(wake_r, selectors.EVENT_READ, lambda events: _drain(wake_r))
            assert vmm.stdout is not None and vmm.stdin is not None
            console.watch(vmm.stdout.fileno(), vmm.stdin.fileno())
            self._loop(vmm, console)
            return 0
        finally:
            self._reap()
            for extra in extras:
                extra.close()
            console.close()
            signal.set_wakeup_fd(old_wakeup)
            os.close(wake_r)
            os.close(wake_w)

    def _serve(self, att: Attachment) -> list[Any]:
        """The control socket, and the guest agent's relay (after it took its new identity,
        for a resumed machine) when the VMM has an agent port."""
        from ignitevm.spawn.control import ControlServer
        from ignitevm.vmm.qmp import listen_unix

        control = listen_unix(self.vm_dir / VMFiles.CONTROL_SOCKET)
        served: list[Any] = [
            ControlServer(self.sel, control, self.driver, self._record, self.vm_dir)
        ]
        port = getattr(self.driver, "agent", None)
        if port is not None:
            from ignitevm.spawn.agentrelay import AgentRelay

            if self.plan.machine.resume is not None:
                self._new_identity(port, att)
            relay = listen_unix(self.vm_dir / VMFiles.AGENT_SOCKET)
            served.append(AgentRelay(self.sel, port, relay))
        return served

    def _new_identity(self, port: Any, att: Attachment) -> None:
        """A machine resumed from a snapshot is another machine: its address, MAC, hostname and
        random generator (docs/snapshots.md)."""
        from ignitevm.vmm.agent import AgentSession

        values = {"seed": os.urandom(32).hex(), "mac": self.plan.machine.mac,
                  "hostname": self.plan.name}  # fmt: skip
        if att.ip:
            values["ip"] = f"{att.ip}/{att.prefix_len or 24}"
            if att.gateway:
                values["gateway"] = att.gateway
            for dns in att.dns:
                values["dns"] = dns
        AgentSession(port).ident(values, IDENT_TIMEOUT)
        log.info("the resumed guest took its identity (%s)", values.get("ip", "no address"))

    def _record(self, state: str) -> None:
        """A state the VM entered (paused, running, stopping, suspended): into runtime.json."""
        if self.status is not None:
            self.status = replace(self.status, state=RuntimeState(state))
            write_runtime(self.vm_dir, self.status)

    def _start_vmm(self, att: Attachment) -> proc.Popen[bytes]:
        spec = self.plan.machine
        spec = replace(spec, cmdline=with_guest_ip(spec.cmdline, att, self.plan.name, spec.mac))
        log.info("starting %s%s", self.driver.name,
                 f" as uid {self.jail.uid}" if self.jail else " unjailed")  # fmt: skip
        self.vmm = vmm = self.driver.start(spec, att, self.jail)
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

    def _loop(self, vmm: proc.Popen[bytes], console: ConsoleRelay) -> None:
        while not console.vmm_gone:
            for key, events in self.sel.select(self.stop.timeout_for_select()):
                key.data(events)
            if self.stop.requested:
                self.stop.begin()
            if not console.vmm_gone:
                self.stop.check(vmm)
            if not console.vmm_gone and vmm.poll() is not None:
                console.drain()
                console.vmm_gone = True


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass
