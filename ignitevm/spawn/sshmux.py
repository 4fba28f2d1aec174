"""The VM's shared SSH connection (OpenSSH connection multiplexing).

Under TCG an SSH handshake costs the guest ~0.3-0.6 s of emulated crypto. ``ignite run --ssh``
(or the first ``ignite exec``/``cp``/``ssh``) opens one master connection with the VM's key;
later clients open a session over its control socket instead of a new handshake.

The master belongs to the VM's run: the supervisor closes it when the VM stops, and so does the
cleanup after a dead supervisor (``remove_runtime_files``). A CNI VM's peer vanishes without a
TCP reset when its netns goes, so waiting for the master to notice is not enough."""

from __future__ import annotations

import contextlib
import hashlib
import socket
from pathlib import Path

from ignitevm import proc
from ignitevm.layout import VMFiles
from ignitevm.userpaths import private_runtime_dir

CONTROL_FILE = VMFiles.SSH_CONTROL
# OpenSSH binds "<ControlPath>.<16 random chars>" first, then renames: sun_path holds 108 bytes.
_MAX_PATH = 108 - 1 - 17


def control_path(vm_dir: Path) -> Path:
    """The master's control socket: in the VM's directory when the path is short enough,
    else a name derived from that directory in this user's private runtime directory (a
    shared /tmp name could be bound first by another user, whose "master" would then see
    every command and file of ours)."""
    path = vm_dir / CONTROL_FILE
    if len(str(path)) <= _MAX_PATH:
        return path
    digest = hashlib.sha256(str(vm_dir.resolve()).encode()).hexdigest()[:16]
    return private_runtime_dir() / f"ssh-{digest}.ctl"


def master_alive(path: Path) -> bool:
    """True when a master listens on ``path`` (a connect is cheaper than ``ssh -O check``)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def close_master(vm_dir: Path) -> None:
    """Stop the VM's master connection, if any, and remove its socket. Idempotent."""
    path = control_path(vm_dir)
    if not path.exists():
        return
    ssh = proc.find_tool("ssh")
    if ssh is not None and master_alive(path):
        with contextlib.suppress(proc.TimeoutExpired):
            proc.run(
                [ssh, "-o", f"ControlPath={path}", "-O", "exit", "ignite-vm"],
                check=False, capture=True, timeout=5,
            )  # fmt: skip
    path.unlink(missing_ok=True)
