"""`ignite ssh`, `ignite exec`, `ignite cp`."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import click

from ignitevm.cli.app import App, pass_app
from ignitevm.cli.lazy import IgniteCommand

_identity = click.option(
    "-i", "--identity", type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None, help="Private key to use instead of the VM's own (ignite run --ssh).",
)  # fmt: skip
_timeout = click.option(
    "--timeout", type=float, default=30.0, show_default=True,
    help="Seconds to wait for the VM's SSH server.",
)  # fmt: skip


@click.command(cls=IgniteCommand)
@click.argument("vm")
@_identity
@_timeout
@pass_app
def ssh(app: App, vm: str, identity: Path | None, timeout: float) -> None:
    """Open an interactive SSH session to a VM (system OpenSSH, the VM's key)."""
    from ignitevm import proc

    proc.exec_replace(app.client().vms.get(vm).ssh_command(identity=identity, timeout=timeout))


# Ignite's exec stops parsing flags at the VM (cobra's interspersed=false): `ignite exec vm ls -q`
# runs `ls -q`; the global flags are taken before the VM only
@click.command(
    cls=IgniteCommand,
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument("vm")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("-t", "--tty", is_flag=True, help="Allocate a terminal.")
@_identity
@_timeout
@pass_app
def exec_(
    app: App, vm: str, command: tuple[str, ...], tty: bool, identity: Path | None, timeout: float
) -> None:
    """Run COMMAND in a VM; its exit code is ignite's. stdin (a pipe or file) is passed
    through; without one, as root, the guest agent runs it (no SSH handshake)."""
    from ignitevm import proc
    from ignitevm.ops.access import remote_command
    from ignitevm.ops.guestexec import no_input

    handle = app.client().vms.get(vm)
    line = remote_command(_command(command))
    sys.stdout.flush()
    if not tty and identity is None and no_input():
        # nothing to forward: the library's exec (the guest agent as root, else SSH), streamed
        sys.exit(handle.exec_stream(line, on_stdout=_write(1), on_stderr=_write(2),
                                    connect_timeout=timeout))  # fmt: skip
    # a terminal or input to forward: ssh itself
    proc.exec_replace([*handle.ssh_command(identity=identity, tty=tty, timeout=timeout), line])


def _write(fd: int) -> Callable[[bytes], None]:
    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    return write


def _command(words: tuple[str, ...]) -> list[str]:
    """The remote command: a leading ``--`` ends the flags, as in cobra, and is not run."""
    return list(words[1:] if words[:1] == ("--",) else words)


exec_.name = "exec"


@click.command(cls=IgniteCommand)
@click.argument("source")
@click.argument("dest")
@click.option("-a", "--archive", is_flag=True,
              help="Keep owners and setuid/setgid/sticky bits (docker cp -a).")  # fmt: skip
@_identity
@_timeout
@pass_app
def cp(
    app: App, source: str, dest: str, archive: bool, identity: Path | None, timeout: float
) -> None:
    """Copy files or directories between the host and a VM: SRC and DST, one of them VM:PATH.
    From a VM: regular files, directories and links that stay inside the copy; no devices."""
    app.client().vms.copy(source, dest, identity=identity, timeout=timeout, archive=archive)
