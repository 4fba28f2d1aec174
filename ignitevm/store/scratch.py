"""Scratch space in ``<state>/tmp``: directories held by their owner while in use, and the
removal of what dead owners left (docs/architecture.md "State directory").

An import builds in ``tmp/import-<16 hex>`` (``tmp/kernel-...`` for a kernel) and renames the
result into the store; ``Store.delete`` renames an object into ``tmp/deleted-...`` and removes
it there. A ``kill -9`` or a full disk leaves such a directory behind, so each is held with
``flock`` by the process using it: the kernel drops the lock when that process dies, however it
dies, which makes "is this left over?" an exact question. A directory whose lock can be taken
has no owner and is removed by the next sweep; a live concurrent import is never touched.

``tmp/.lock`` makes creating a directory and locking it one step for a sweep, which otherwise
could take a directory in the moment between its ``mkdir`` and its lock.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ignitevm.layout import TMP_LOCK
from ignitevm.store.locks import file_lock, try_hold_lock

log = logging.getLogger(__name__)

# what this module creates: <prefix>-<16 hex> (imports, kernel imports, VMs being created),
# and graves deleted-<kind>-<uid>-<8 hex>
_HELD = re.compile(r"(import|kernel|vm)-[0-9a-f]{16}|deleted-[a-z]+-[0-9a-f]{16}-[0-9a-f]{8}")
# what versions before the locks left (tempfile.mkdtemp's names): owner unknown, so only
# removed once old enough that no import can still be using them
_UNHELD = re.compile(r"(import|kernel)-[a-z0-9_]{8}")
UNHELD_AGE = 6 * 3600.0
STALE_PREFIX = "stale-"


@contextmanager
def scratch_dir(tmp: Path, prefix: str) -> Iterator[Path]:
    """A new, private (0700) directory ``tmp/<prefix>-<16 hex>``, held while the block runs
    and removed after it; leftovers of dead processes are removed first."""
    sweep(tmp)
    with file_lock(tmp / TMP_LOCK):
        path = tmp / f"{prefix}-{os.urandom(8).hex()}"
        path.mkdir(mode=0o700)
        fd = try_hold_lock(path)
    assert fd is not None  # a new directory: nobody else knows it yet
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def grave_name(kind: str, uid: str) -> str:
    """Where ``Store.delete`` moves an object (held: the caller locks the object first)."""
    return f"deleted-{kind}-{uid}-{os.urandom(4).hex()}"


def sweep(tmp: Path) -> int:
    """Remove what dead processes left in ``tmp``; returns how many directories went."""
    try:
        names = os.listdir(tmp)
    except FileNotFoundError:
        return 0
    if any(_HELD.fullmatch(n) or _UNHELD.fullmatch(n) for n in names):
        with file_lock(tmp / TMP_LOCK):
            for name in names:
                _retire_if_unowned(tmp, name)
    removed = 0
    for path in tmp.glob(STALE_PREFIX + "*"):
        # renamed under the lock: no process owns these any more (two sweepers may race
        # here; rmtree ignores what the other removed)
        log.info("removing %s, left by a process that died", path.name[len(STALE_PREFIX) :])
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


def _retire_if_unowned(tmp: Path, name: str) -> None:
    """Rename ``tmp/name`` to ``stale-<name>`` when no live process holds it."""
    path = tmp / name
    if _UNHELD.fullmatch(name):
        try:
            if time.time() - path.stat().st_mtime < UNHELD_AGE:
                return
        except FileNotFoundError:
            return
    elif not _HELD.fullmatch(name):
        return
    try:
        fd = try_hold_lock(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    if fd is None:
        return  # its owner lives
    try:
        os.rename(path, tmp / (STALE_PREFIX + name))
    except OSError as exc:
        log.warning("cannot move %s aside: %s", path, exc.strerror)
    finally:
        os.close(fd)
