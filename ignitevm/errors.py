"""Error types. Core code raises these; only ``cli/`` prints them and picks exit codes."""

from __future__ import annotations

from collections.abc import Sequence


class IgniteError(Exception):
    """An error a user can act on: ``message`` says what is wrong, ``hint`` what to do."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def add_context(self, context: str) -> None:
        """Say in the message what was being done ("cannot import image 'x': ...")."""
        self.message = f"{context}: {self.message}"
        self.args = (self.message,)


class NotFoundError(IgniteError):
    """A named object (VM, image, kernel, file) does not exist."""


class AmbiguousError(IgniteError):
    """A name or uid prefix matches several objects."""

    def __init__(self, kind: str, query: str, candidates: Sequence[str]) -> None:
        listing = ", ".join(candidates)
        super().__init__(
            f"{kind} {query!r} is ambiguous: it matches {listing}",
            hint="use more characters of the uid, or the full name",
        )
        self.candidates = list(candidates)


class ValidationError(IgniteError):
    """Bad input: a flag, a manifest field, a size."""

    exit_code = 2


class ConflictError(IgniteError):
    """The operation conflicts with current state (in use, already exists, running)."""


class UnsafeLayerError(IgniteError):
    """An image layer tried to write outside the root filesystem."""


class CommandError(IgniteError):
    """A subprocess failed. Carries argv, exit code and stderr."""

    def __init__(
        self,
        argv: Sequence[str],
        returncode: int,
        stderr: str,
        hint: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        tail = stderr.strip().splitlines()[-5:]
        detail = ("\n  " + "\n  ".join(tail)) if tail else ""
        super().__init__(f"{argv[0]} exited with code {returncode}{detail}", hint=hint)


class MissingToolError(IgniteError):
    """A required system tool is not installed."""


class AlreadyExistsError(ConflictError):
    """An object with that name (or uid) exists already."""


class InUseError(ConflictError):
    """The object is in use: VMs use the image or kernel, VMs or snapshots sit on a snapshot."""


class PreflightError(IgniteError):
    """Preflight checks failed before a VM start; ``checks`` names them (``KVM``, ``Jail``...)."""

    def __init__(self, message: str, hint: str | None = None, checks: Sequence[str] = ()) -> None:
        super().__init__(message, hint=hint)
        self.checks = list(checks)


class Timeout(IgniteError):
    """Something did not happen in the time given: a boot, the guest's SSH or agent, a command
    in the guest."""


class GuestCommandError(IgniteError):
    """A command run in a VM exited with a code other than 0 (``check=True``); it carries the
    command, its exit code and its output."""

    def __init__(self, command: str, returncode: int, stdout: str, stderr: str) -> None:
        tail = (stderr or stdout).strip().splitlines()[-5:]
        detail = ("\n  " + "\n  ".join(tail)) if tail else ""
        super().__init__(f"{command!r} exited with code {returncode} in the VM{detail}",
                         hint="see its stdout and stderr on this error")  # fmt: skip
        self.command = command
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
