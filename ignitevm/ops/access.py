"""`ignite ssh`, `ignite exec`, `ignite cp`: the system OpenSSH client with the VM's key; the
VM's host key is pinned at the first connection (Ignite ignored host keys)."""

from __future__ import annotations

import logging
import shlex
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from ignitevm import proc
from ignitevm.api import VM
from ignitevm.errors import IgniteError, NotFoundError, Timeout
from ignitevm.layout import VMFiles
from ignitevm.ops.services import Services
from ignitevm.ops.vmlist import require_vm, vm_dir
from ignitevm.spawn.sshmux import control_path, master_alive

log = logging.getLogger(__name__)

STARTING_WAIT = 30.0  # seconds exec/ssh/cp wait for a VM whose VMM is not launched yet
MASTER_IDLE = "10m"  # an unused master goes away after this; the VM's stop closes it anyway


@dataclass(frozen=True)
class SSHTarget:
    vm: VM
    host: str
    port: int
    identity: Path
    known_hosts: Path
    # the VM's shared connection (spawn/sshmux.py); None: every ssh makes its own handshake
    control: Path | None = None

    def argv(self, *, tty: bool | None = None, timeout: float = 10) -> list[str]:
        """ssh's argv up to (and including) the destination: over the VM's master connection
        when one is up, else a connection of its own."""
        return [*self._options(timeout), *self._tty(tty), f"root@{self.host}"]

    def master_argv(self, timeout: float) -> list[str]:
        """Opens the master in the background once authenticated (-f), no command (-N)."""
        assert self.control is not None
        return [
            *self._options(timeout, master=True),
            "-o", f"ControlPersist={MASTER_IDLE}",
            "-N", "-f", f"root@{self.host}",
        ]  # fmt: skip

    def _tty(self, tty: bool | None) -> list[str]:
        return {True: ["-t"], False: ["-T"], None: []}[tty]

    def _options(self, timeout: float, *, master: bool = False) -> list[str]:
        # ssh keeps the first value it gets for an option: each is given once
        args = [
            proc.require_tool("ssh"),
            "-i", str(self.identity),
            "-p", str(self.port),
            "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "StrictHostKeyChecking=accept-new",
            # The pinned key belongs to the VM, whatever address or port reaches it.
            "-o", f"HostKeyAlias={self.vm.status.id_prefix or 'ignite'}-{self.vm.metadata.uid}",
            "-o", f"ConnectTimeout={max(1, int(timeout))}",
            "-o", "LogLevel=ERROR",
            "-o", "ServerAliveInterval=15",
        ]  # fmt: skip
        if self.control is not None:
            mode = "yes" if master else "no"
            args += ["-o", f"ControlPath={self.control}", "-o", f"ControlMaster={mode}"]
        return args


def require_target(
    svc: Services, query: str, identity: Path | None = None, *, any_key: bool = False
) -> SSHTarget:
    """Where and how to reach a running VM over SSH, or an IgniteError saying what is missing.
    ``any_key``: the caller only waits for sshd, a VM made with the user's own key will do."""
    from ignitevm.spawn import runtime_status

    vm = require_vm(svc, query)
    d = vm_dir(svc, vm)
    status = runtime_status(d)
    name = vm.metadata.name
    # just started with --wait=false (its network may wait for the user's interfaces): give
    # it a moment to launch its VMM, as Ignite's exec waited for the VM
    deadline = time.monotonic() + STARTING_WAIT
    while status is not None and status.state == "starting" and time.monotonic() < deadline:
        time.sleep(0.1)
        status = runtime_status(d)
    if status is None:
        raise IgniteError(f"VM {name} is not running", hint=f"start it: ignite start {name}")
    if status.state == "starting":
        raise IgniteError(f"VM {name} is still starting", hint=f"see ignite logs {name}")
    key = identity or d / VMFiles.SSH_KEY
    # a key given with -i is honoured: the master authenticated with the VM's own key
    control = control_path(d) if identity is None else None
    if not key.is_file() and not any_key:
        raise NotFoundError(
            f"VM {name} has no SSH key" if identity is None else f"identity file {key} not found",
            hint="create the VM with --ssh, or pass -i PRIVATE_KEY",
        )
    forward = next((p for p in status.ports if p.vm_port == 22 and p.protocol == "tcp"), None)
    if status.network == "user":
        if forward is None:
            raise IgniteError(f"VM {name} publishes no SSH port", hint="run it with -p PORT:22")
        host = "127.0.0.1" if forward.host_ip in ("0.0.0.0", "") else forward.host_ip
        return SSHTarget(vm, host, forward.host_port, key, d / VMFiles.KNOWN_HOSTS, control)
    if not status.ip_addresses:
        raise IgniteError(
            f"VM {name} has no network address (network plugin {status.network})",
            hint="run it with --network-plugin cni (or user)",
        )
    return SSHTarget(vm, status.ip_addresses[0], 22, key, d / VMFiles.KNOWN_HOSTS, control)


def connect(target: SSHTarget, timeout: float) -> None:
    """Make ``target`` ready for ssh: its master connection up (opened when missing), or at
    least sshd answering. Raises IgniteError when sshd does not answer in ``timeout``."""
    if target.control is not None and master_alive(target.control):
        return
    wait_for_ssh(target, timeout)
    if target.control is not None:
        open_master(target, timeout)


def open_master(target: SSHTarget, timeout: float) -> bool:
    """Open the VM's master connection; False (and every ssh connects on its own) if ssh could
    not: the error then shows on the client's own connection."""
    from ignitevm.store.locks import file_lock

    assert target.control is not None
    # One opener at a time: ssh that finds the socket taken would go on without it, a plain
    # background connection nobody closes.
    with file_lock(target.known_hosts.with_name(VMFiles.SSH_LOCK)):  # in the VM's dir
        if master_alive(target.control):
            return True
        target.control.unlink(missing_ok=True)  # a dead master's socket
        try:
            done = proc.run(target.master_argv(timeout), check=False, timeout=timeout + 5)
        except proc.TimeoutExpired:
            log.debug("ssh master to %s timed out", target.vm.metadata.name)
            return False
    if done.returncode != 0:
        log.debug("no ssh master for %s: %s", target.vm.metadata.name, done.stderr.decode())
        return False
    return True


def wait_for_ssh(target: SSHTarget, timeout: float) -> None:
    """Wait until the VM's SSH port accepts connections (sshd starts after the boot marker)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            # A connect alone proves nothing: QEMU's user-mode forward accepts on the host side
            # before the guest listens. sshd's banner does.
            with socket.create_connection((target.host, target.port), timeout=2) as sock:
                sock.settimeout(5)
                if sock.recv(4) == b"SSH-":
                    return
                raise OSError("no SSH banner")
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise Timeout(
                    f"cannot reach SSH of VM {target.vm.metadata.name} at "
                    f"{target.host}:{target.port} in {timeout:g} s: {exc}",
                    hint=f"is sshd running in the guest? see ignite logs {target.vm.metadata.name}",
                ) from None
            time.sleep(0.05)


def remote_command(command: list[str]) -> str:
    """ssh joins its arguments with spaces for the remote shell: quote each one."""
    if len(command) == 1:
        return command[0]  # one argument is a shell command line, as with ssh itself
    return " ".join(shlex.quote(c) for c in command)
