"""The one place that runs subprocesses: argv lists only, logged at debug level."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from ignitevm.errors import CommandError, MissingToolError

log = logging.getLogger(__name__)

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
) -> subprocess.CompletedProcess[bytes]:
    """Run argv to completion. Raises CommandError on a non-zero exit when ``check``."""
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
