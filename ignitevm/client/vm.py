"""A VM handle of the library (docs/library.md): the verbs of the CLI on one VM, as methods.

A handle names its VM by uid; every method acts on the VM as it is in the store at that moment
(``refresh()`` re-reads what the properties show). Handles are cheap and safe to share between
threads: two methods on one VM at once are ordered by the same locks as two CLI commands.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from ignitevm.errors import GuestCommandError, IgniteError

if TYPE_CHECKING:
    from ignitevm.api import VM as VMObject
    from ignitevm.api import Snapshot, VMStatus
    from ignitevm.client.client import Client


@dataclass(frozen=True)
class ExecResult:
    """What a command run in a VM did: its exit code and its output (decoded as UTF-8, bad
    bytes replaced; the exact bytes are ``stdout_bytes``/``stderr_bytes``)."""

    returncode: int
    stdout_bytes: bytes
    stderr_bytes: bytes

    @property
    def stdout(self) -> str:
        """The command's standard output as text."""
        return self.stdout_bytes.decode(errors="replace")

    @property
    def stderr(self) -> str:
        """The command's standard error as text."""
        return self.stderr_bytes.decode(errors="replace")

    @property
    def ok(self) -> bool:
        """Whether it exited with 0."""
        return self.returncode == 0


class VM:
    """One VM. Got from ``client.vms``: ``create``, ``run``, ``get``, ``list``.

    As a context manager (``with client.vms.run(image) as vm:``) it removes the VM when the
    block ends, whether or not the block raised."""

    def __init__(self, client: Client, obj: VMObject) -> None:
        self._client = client
        self._obj = obj

    def __repr__(self) -> str:
        return f"<ignitevm.VM {self.name} {self.uid} {self.state}>"

    def __enter__(self) -> VM:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.remove(force=True)

    # --- what it is ---------------------------------------------------------------------------

    @property
    def uid(self) -> str:
        """Its unique id (16 hex digits; any unique prefix names it too)."""
        return self._obj.metadata.uid

    @property
    def name(self) -> str:
        """Its name."""
        return self._obj.metadata.name

    @property
    def object(self) -> VMObject:
        """The stored ``ignitevm.api.VM`` (spec and status) as of the last read."""
        return self._obj

    @property
    def status(self) -> VMStatus:
        """``object.status``: running, addresses, the network plugin, how the last run ended."""
        return self._obj.status

    @property
    def running(self) -> bool:
        """Whether its VMM runs (paused included), as of the last read."""
        return self._obj.status.running

    @property
    def state(self) -> str:
        """``running``, ``paused``, ``suspended`` or ``stopped`` (as of the last read)."""
        st = self._obj.status
        if st.paused:
            return "paused"
        if st.running:
            return "running"
        return "suspended" if st.suspended else "stopped"

    @property
    def ip(self) -> str | None:
        """The guest's first address (None while it has none: stopped, or no network)."""
        addresses = self._obj.status.network.ip_addresses
        return addresses[0] if addresses else None

    def refresh(self) -> VM:
        """Read the VM again (its live state included); returns itself."""
        from ignitevm.ops.vmlist import get_vm

        self._obj = get_vm(self._client._svc, self.uid).vm
        return self

    # --- lifecycle ----------------------------------------------------------------------------

    def start(
        self, *, timeout: float = 180.0, wait: bool = True, network_plugin: str | None = None,
        vmm: str | None = None, debug: bool = False, ignore_preflight: str | Iterable[str] = (),
    ) -> VM:  # fmt: skip
        """Start it; with ``wait``, return once the guest's init runs (and, with ssh, its SSH
        answers). A VM made from a snapshot resumes instead of booting. ``network_plugin`` and
        ``vmm`` override the VM's for this start; ``ignore_preflight`` names preflight checks
        (or ``all``) whose failure is only a warning; ``debug`` keeps the VMM's debug output."""
        from ignitevm.ops.preflight import parse_ignored
        from ignitevm.ops.start import start_vm

        self._obj = start_vm(self._client._svc, self.uid, wait=wait, timeout=timeout,
                             network_plugin=network_plugin or self._client._network_plugin,
                             vmm=vmm, debug=debug,
                             ignore_preflight=parse_ignored(ignore_preflight))  # fmt: skip
        return self.refresh()

    def _restart(
        self, *, timeout: float | None = None, ignore_preflight: str | Iterable[str] = ()
    ) -> VM:
        """Start it again as its restart policy says (ignited): its own network plugin;
        ConflictError when a person stopped it meanwhile."""
        from ignitevm.ops.preflight import parse_ignored
        from ignitevm.ops.restart import restart_vm

        kw = {} if timeout is None else {"timeout": timeout}
        restart_vm(self._client._svc, self.uid, ignore_preflight=parse_ignored(ignore_preflight),
                   **kw)  # fmt: skip
        return self.refresh()

    def set_labels(self, labels: dict[str, str], annotations: dict[str, str] | None = None) -> VM:
        """Replace its labels (and ``annotations``, when given); nothing else changes."""
        from ignitevm.api import Kind

        def update(vm: VMObject) -> VMObject:
            vm.metadata.labels = dict(labels)
            if annotations is not None:
                vm.metadata.annotations = dict(annotations)
            return vm

        self._client._svc.store.update(Kind.VM, self.uid, update)
        return self.refresh()

    def stop(self, *, timeout: float = 30.0, force: bool = False) -> VM:
        """The ACPI power button; a hard stop after ``timeout`` seconds (``force``: at once)."""
        from ignitevm.ops.stop import stop_vm

        stop_vm(self._client._svc, self.uid, timeout=timeout, force=force)
        return self.refresh()

    def kill(self) -> VM:
        """Stop it at once."""
        from ignitevm.ops.stop import kill_vm

        kill_vm(self._client._svc, self.uid)
        return self.refresh()

    def remove(self, *, force: bool = False) -> None:
        """Remove it (``force``: stop it first if it runs). A VM already gone is no error."""
        from ignitevm.errors import NotFoundError
        from ignitevm.ops.remove import remove_vm

        with contextlib.suppress(NotFoundError):
            remove_vm(self._client._svc, self.uid, force=force)

    def pause(self) -> VM:
        """Freeze its vCPUs; its memory stays (Docker's pause)."""
        from ignitevm.ops.pausing import pause_vm

        pause_vm(self._client._svc, self.uid)
        return self.refresh()

    def unpause(self) -> VM:
        """Let a paused VM run on."""
        from ignitevm.ops.pausing import unpause_vm

        unpause_vm(self._client._svc, self.uid)
        return self.refresh()

    def suspend(self) -> VM:
        """Save it to disk and let its VMM exit; ``start()`` resumes it where it was."""
        from ignitevm.ops.pausing import suspend_vm

        suspend_vm(self._client._svc, self.uid)
        return self.refresh()

    def wait_ready(self, *, timeout: float = 60.0) -> VM:
        """Return once a command can run in it (the guest agent answers, or its SSH)."""
        import time

        from ignitevm.errors import Timeout

        deadline = time.monotonic() + timeout
        while True:
            try:
                result = self.exec("true", timeout=max(1.0, deadline - time.monotonic()))
                if result.ok:
                    return self
            except Timeout:
                pass
            if time.monotonic() >= deadline:
                raise Timeout(f"VM {self.name} was not ready in {timeout:g} s",
                              hint=f"see its console: ignite logs {self.name}")  # fmt: skip
            time.sleep(0.2)

    # --- commands and files -------------------------------------------------------------------

    def exec(
        self,
        command: str | Sequence[str],
        *,
        input: bytes | str | None = None,
        timeout: float | None = None,
        check: bool = False,
        on_stdout: Callable[[bytes], None] | None = None,
        on_stderr: Callable[[bytes], None] | None = None,
    ) -> ExecResult:
        """Run ``command`` as root in the VM: a shell command line, or a list of words run as
        they are. ``input`` is its stdin. ``on_stdout``/``on_stderr`` get its output as it comes
        (it is in the result too). ``check``: a non-zero exit raises GuestCommandError;
        ``timeout``: ignitevm.errors.Timeout when it runs longer (the command is killed).
        Through the guest agent when the VM has one and this process is root, else over SSH
        (``ssh=True`` VMs)."""
        line = command if isinstance(command, str) else shlex.join(command)
        out: list[bytes] = []
        err: list[bytes] = []

        Sink = Callable[[bytes], None]

        def keep(into: list[bytes], also: Sink | None) -> Sink:
            def take(chunk: bytes) -> None:
                into.append(chunk)
                if also is not None:
                    also(chunk)

            return take

        to_out, to_err = keep(out, on_stdout), keep(err, on_stderr)
        code = self.exec_stream(line, input=input, timeout=timeout, on_stdout=to_out,
                                on_stderr=to_err)  # fmt: skip
        result = ExecResult(code, b"".join(out), b"".join(err))
        if check and code != 0:
            raise GuestCommandError(line, code, result.stdout, result.stderr)
        return result

    def exec_stream(
        self,
        command: str | Sequence[str],
        *,
        on_stdout: Callable[[bytes], None],
        on_stderr: Callable[[bytes], None],
        input: bytes | str | None = None,
        timeout: float | None = None,
        connect_timeout: float = 30.0,
    ) -> int:
        """``exec`` whose output only goes to ``on_stdout``/``on_stderr`` as it comes, nothing
        kept (for long or large output); its exit code. ``connect_timeout``: seconds to wait
        for the guest agent or the VM's SSH server."""
        from ignitevm.ops.guestexec import agent_dir, agent_exec, ssh_exec

        line = command if isinstance(command, str) else shlex.join(command)
        data = input.encode() if isinstance(input, str) else (input or b"")
        svc = self._client._svc
        d = agent_dir(svc, self.uid)
        if d is not None:
            return agent_exec(d, line, stdin=data, timeout=timeout, on_stdout=on_stdout,
                              on_stderr=on_stderr, connect_timeout=connect_timeout)  # fmt: skip
        return ssh_exec(svc, self.uid, line, stdin=data, timeout=timeout, on_stdout=on_stdout,
                        on_stderr=on_stderr, connect_timeout=connect_timeout)  # fmt: skip

    def ssh_command(
        self, *, identity: str | os.PathLike[str] | None = None, tty: bool | None = None,
        timeout: float = 30.0,
    ) -> list[str]:  # fmt: skip
        """The ``ssh`` command line that logs into the VM as root with its key (or
        ``identity``), once its SSH server answers (``timeout``); append a remote command to
        run one. ``tty``: force (True) or refuse (False) a terminal; ssh decides by default."""
        from pathlib import Path

        from ignitevm.ops.access import connect, require_target

        key = Path(identity) if identity is not None else None
        target = require_target(self._client._svc, self.uid, key)
        connect(target, timeout)
        return target.argv(tty=tty, timeout=timeout)

    def attach(self, stdin_fd: int = 0, stdout_fd: int = 1) -> None:
        """Connect its serial console to ``stdin_fd``/``stdout_fd`` until Ctrl-P Ctrl-Q or
        until the VM stops (``ignite attach``)."""
        from ignitevm.ops.logs import attach_console

        attach_console(self._client._svc, self.uid, stdin_fd, stdout_fd)

    def put(self, local: str | os.PathLike[str], remote: str, *, archive: bool = False) -> None:
        """Copy a host file or directory into the VM (as ``ignite cp LOCAL VM:REMOTE``)."""
        from ignitevm.ops.copy import copy

        copy(self._client._svc, os.fspath(local), f"{self.uid}:{remote}", archive=archive)

    def get(self, remote: str, local: str | os.PathLike[str], *, archive: bool = False) -> None:
        """Copy a file or directory out of the VM (as ``ignite cp VM:REMOTE LOCAL``: nothing
        the guest made can lead outside ``local``)."""
        from ignitevm.ops.copy import copy

        copy(self._client._svc, f"{self.uid}:{remote}", os.fspath(local), archive=archive)

    def logs(self) -> str:
        """The serial console so far."""
        return b"".join(self.follow_logs(follow=False)).decode(errors="replace")

    def follow_logs(self, *, follow: bool = True) -> Iterator[bytes]:
        """The console's bytes; with ``follow``, new output until the VM stops."""
        from ignitevm.ops.logs import stream_logs

        return stream_logs(self._client._svc, self.uid, follow=follow)

    # --- snapshots ----------------------------------------------------------------------------

    def snapshot(self, name: str | None = None, *, stop: bool = False) -> Snapshot:
        """Save the running VM (docs/snapshots.md); it runs on, or stops (``stop``)."""
        return self._snapshot(name, stop=stop)[0]

    def _snapshot(self, name: str | None, *, stop: bool) -> tuple[Snapshot, dict[str, float]]:
        """The snapshot and the figures of its save (``ignite snapshot create`` prints them)."""
        from ignitevm.ops.snapshots import create_snapshot

        made = create_snapshot(self._client._svc, self.uid, name=name, stop=stop)
        with contextlib.suppress(IgniteError):  # --stop may leave it to a concurrent rm
            self.refresh()
        return made

    def fork(
        self, count: int = 1, *, name_prefix: str | None = None, network_plugin: str | None = None
    ) -> list[VM]:
        """A snapshot and ``count`` running copies of this VM, each its own machine, started in
        parallel. When some do not start, IgniteError names them (they stay created)."""
        made, failed = self._fork(count, name_prefix=name_prefix, network_plugin=network_plugin)
        if failed:
            raise fork_error(failed, count)
        return made

    def _fork(
        self, count: int, *, name_prefix: str | None, network_plugin: str | None
    ) -> tuple[list[VM], list[tuple[str, IgniteError]]]:
        """The copies that run and the names of those that did not, with why."""
        from ignitevm.ops.fork import fork_vm

        result = fork_vm(self._client._svc, self.uid, count, name_prefix=name_prefix,
                         network_plugin=network_plugin or self._client._network_plugin)  # fmt: skip
        return [VM(self._client, obj) for obj in result.vms], list(result.failed)


def fork_error(failed: list[tuple[str, IgniteError]], count: int) -> IgniteError:
    """The error of a fork some of whose copies did not start."""
    names = ", ".join(name for name, _ in failed)
    return IgniteError(
        f"{len(failed)} of {count} forks did not start ({names}): {failed[0][1].message}",
        hint="see `ignite logs` of each; they are created: ignite start or rm them",
    )
