"""The one place that runs subprocesses: argv lists only, logged at debug level."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from ignitevm.errors import CommandError, MissingToolError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_LIBC: Any = None  # ctypes' libc, loaded on first use (ignite ps never runs a tool)

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT
Popen = subprocess.Popen
TimeoutExpired = subprocess.TimeoutExpired

# Debian packages that provide the tools we call, for the "install it" hint.
_PACKAGES = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "mkfs.ext4": "e2fsprogs",
    "resize2fs": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "busybox": "busybox-static",
    "dropbear": "dropbear-bin",
    "cpio": "cpio",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "ip": "iproute2",
    "git": "git",
}


def _search_path() -> str:
    # PATH, the sbin dirs a non-login root shell may lack, and ignite's own bin dir (a venv's
    # bin holds tools installed with ignite, e.g. firecracker, even when it is not on PATH)
    own = os.path.dirname(sys.executable)
    return os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", own])


def require_tool(name: str) -> str:
    """Return the absolute path of ``name`` or raise MissingToolError with an install hint."""
    path = shutil.which(name, path=_search_path())
    if path is None:
        pkg = _PACKAGES.get(name, name)
        raise MissingToolError(
            f"{name} is not installed", hint=f"install it: apt-get install {pkg}"
        )
    return path


def find_tool(name: str) -> str | None:
    return shutil.which(name, path=_search_path())


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    input: bytes | str | None = None,
    check: bool = True,
    capture: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float | None = None,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    hint: str | None = None,
    die_with_parent: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run argv to completion. Raises CommandError on a non-zero exit when ``check``.

    The child gets SIGKILL when this process dies, ``kill -9`` included (``die_with_parent``):
    a killed ``ignite image import`` must not leave its ``mkfs.ext4`` running and writing into
    a temporary directory the next import removes. A tool that daemonizes (``ssh -f``) is not
    affected: the kernel clears the setting in a forked child."""
    args = [os.fspath(a) for a in argv]
    log.debug("+ %s", " ".join(args))
    if isinstance(input, str):
        input = input.encode()
    try:
        proc = subprocess.run(
            args,
            input=input,
            stdout=stdout if stdout is not None else (PIPE if capture else None),
            stderr=stderr if stderr is not None else (PIPE if capture else None),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            timeout=timeout,
            check=False,
            preexec_fn=_die_with_parent() if die_with_parent else None,
        )
    except FileNotFoundError as exc:
        pkg = _PACKAGES.get(Path(args[0]).name, Path(args[0]).name)
        raise MissingToolError(
            f"{args[0]} is not installed", hint=f"install it: apt-get install {pkg}"
        ) from exc
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace") if isinstance(proc.stderr, bytes) else ""
        raise CommandError(args, proc.returncode, err, hint=hint)
    return proc


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that sets PR_SET_PDEATHSIG=SIGKILL in the child (None off Linux).

    It fires when the *thread* that forked exits; ``run`` waits for its child in that thread,
    so the child never outlives the caller's wait. The function calls into libc only (no
    Python-level lock), which is what keeps a preexec_fn safe in a threaded caller (ignited)."""
    global _LIBC
    if _LIBC is None:
        import ctypes

        try:
            _LIBC = ctypes.CDLL(None, use_errno=True)
        except OSError:
            return None
    libc, parent = _LIBC, os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the caller died before prctl took effect
            os._exit(1)

    return preexec


def output(argv: Sequence[str | os.PathLike[str]], **kwargs: Any) -> str:
    """Run argv and return its stdout as text."""
    return run(argv, **kwargs).stdout.decode(errors="replace")


def start(
    argv: Sequence[str | os.PathLike[str]],
    **kwargs: Any,
) -> subprocess.Popen[bytes]:
    """Start argv without waiting (long-running children: VMMs, servers)."""
    args = [os.fspath(a) for a in argv]
    log.debug("+ %s &", " ".join(args))
    try:
        return subprocess.Popen(args, **kwargs)
    except FileNotFoundError as exc:
        pkg = _PACKAGES.get(Path(args[0]).name, Path(args[0]).name)
        raise MissingToolError(
            f"{args[0]} is not installed", hint=f"install it: apt-get install {pkg}"
        ) from exc


def exec_replace(argv: Sequence[str | os.PathLike[str]]) -> None:
    """Replace this process with argv (interactive children whose exit code is ours: ssh)."""
    args = [os.fspath(a) for a in argv]
    log.debug("+ exec %s", " ".join(args))
    try:
        os.execv(args[0], args)
    except FileNotFoundError as exc:
        pkg = _PACKAGES.get(Path(args[0]).name, Path(args[0]).name)
        raise MissingToolError(
            f"{args[0]} is not installed", hint=f"install it: apt-get install {pkg}"
        ) from exc
