"""File locks: the "running" lock on a VM directory and the metadata lock file.

A VM runs while its supervisor holds ``flock(LOCK_EX)`` on ``vm/<uid>/`` (an
``O_RDONLY|O_DIRECTORY`` fd). The kernel drops the lock when the supervisor dies however it
dies, so "running" can never go stale (docs/architecture.md "State and truth").
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ignitevm.errors import ConflictError

# is_locked() probes with a short-lived shared lock; a hold_lock() racing with a probe retries for
# this long so a concurrent `ignite ps` never makes a start fail.
_HOLD_RETRY_SECONDS = 0.2


def _open_dir(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def is_locked(path: Path) -> bool:
    """True while some process holds ``flock(LOCK_EX)`` on the directory ``path``."""
    try:
        fd = _open_dir(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        # A shared probe conflicts with the holder's exclusive lock, but not with other probes.
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing the fd releases the probe's lock
    return False


def try_hold_lock(path: Path, wait: float = 0.0) -> int | None:
    """Take ``flock(LOCK_EX)`` on the directory ``path``, retrying for ``wait`` seconds; the fd
    (keep it open; close-on-exec), or None while another process holds the lock."""
    fd = _open_dir(path)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(0.01)
        except BaseException:
            os.close(fd)
            raise


def hold_lock(path: Path) -> int:
    """Like ``try_hold_lock``, but ConflictError if another process holds the lock. It retries
    briefly: a concurrent is_locked() probe must never make a start fail."""
    fd = try_hold_lock(path, _HOLD_RETRY_SECONDS)
    if fd is None:
        raise ConflictError(
            f"{path} is locked by another process (the VM is running)",
            hint="stop it first with `ignite stop`",
        )
    return fd


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold ``flock(LOCK_EX)`` on the lock file ``path`` (created if missing), blocking."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def try_file_lock(path: Path) -> int | None:
    """``flock(LOCK_EX)`` on the lock file ``path`` (created if missing) without waiting: the
    fd (close it to release; close-on-exec), or None while another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd
