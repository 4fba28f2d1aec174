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
