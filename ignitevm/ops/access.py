"""`ignite ssh`, `ignite exec`, `ignite cp`: the system OpenSSH client with the VM's key; the
VM's host key is pinned at the first connection (Ignite ignored host keys)."""

from __future__ import annotations

import shlex
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from ignitevm import proc
from ignitevm.api import VM, Kind
from ignitevm.errors import IgniteError, NotFoundError
from ignitevm.ops.services import Services
from ignitevm.ops.vmfiles import KNOWN_HOSTS_FILE, SSH_KEY_FILE, vm_dir


@dataclass(frozen=True)
class SSHTarget:
    vm: VM
    host: str
    port: int
    identity: Path
    known_hosts: Path

    def argv(self, *, tty: bool | None = None, timeout: float = 10) -> list[str]:
        """ssh's argv up to (and including) the destination."""
        args = [
            proc.require_tool("ssh"),
            "-i", str(self.identity),
            "-p", str(self.port),
            "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "StrictHostKeyChecking=accept-new",
            # The pinned key belongs to the VM, whatever address or port reaches it.
            "-o", f"HostKeyAlias=ignite-{self.vm.metadata.uid}",
            "-o", f"ConnectTimeout={max(1, int(timeout))}",
            "-o", "LogLevel=ERROR",
            "-o", "ServerAliveInterval=15",
        ]  # fmt: skip
        if tty is True:
            args.append("-t")
        elif tty is False:
            args.append("-T")
        return [*args, f"root@{self.host}"]


def require_target(svc: Services, query: str, identity: Path | None = None) -> SSHTarget:
    """Where and how to reach a running VM over SSH, or an IgniteError saying what is missing."""
    from ignitevm.spawn import runtime_status

    vm = svc.store.require(Kind.VM, query)
    d = vm_dir(svc, vm)
    status = runtime_status(d)
    name = vm.metadata.name
    if status is None:
        raise IgniteError(f"VM {name} is not running", hint=f"start it: ignite start {name}")
    key = identity or d / SSH_KEY_FILE
    if not key.is_file():
        raise NotFoundError(
            f"VM {name} has no SSH key" if identity is None else f"identity file {key} not found",
            hint="create the VM with --ssh, or pass -i PRIVATE_KEY",
        )
    forward = next((p for p in status.ports if p.vm_port == 22 and p.protocol == "tcp"), None)
    if status.network == "user":
        if forward is None:
            raise IgniteError(f"VM {name} publishes no SSH port", hint="run it with -p PORT:22")
        host = "127.0.0.1" if forward.host_ip in ("0.0.0.0", "") else forward.host_ip
        return SSHTarget(vm, host, forward.host_port, key, d / KNOWN_HOSTS_FILE)
    if not status.ip_addresses:
        raise IgniteError(
            f"VM {name} has no network address (network plugin {status.network})",
            hint="run it with --network-plugin cni (or user)",
        )
    return SSHTarget(vm, status.ip_addresses[0], 22, key, d / KNOWN_HOSTS_FILE)


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
                raise IgniteError(
                    f"cannot reach SSH of VM {target.vm.metadata.name} at "
                    f"{target.host}:{target.port} in {timeout:g} s: {exc}",
                    hint="is sshd running in the guest? see ignite logs "
                    f"{target.vm.metadata.name}",
                ) from None
            time.sleep(0.2)


def remote_command(command: list[str]) -> str:
    """ssh joins its arguments with spaces for the remote shell: quote each one."""
    if len(command) == 1:
        return command[0]  # one argument is a shell command line, as with ssh itself
    return " ".join(shlex.quote(c) for c in command)
