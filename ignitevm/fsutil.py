"""Atomic file writes (a temp file in the same directory, renamed over the target) and the modes
of the state directory's files (docs/architecture.md "State directory")."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PRIVATE_MODE = 0o600  # guest data and keys: disks, boot files with copy-files, consoles
PUBLIC_MODE = 0o644  # metadata others may read (ps, inspect as a non-root user)


def write_json_atomic(
    path: Path, data: Any, *, fsync: bool = False, mode: int = PUBLIC_MODE
) -> None:
    """Write ``data`` as JSON to ``path`` atomically: readers see the old file or the new one.

    The temp name is unique per process and thread (no ``tempfile``: it would add ~15 ms of
    imports to every supervisor start). ``fsync`` for records that must survive a host crash.
    The file gets ``mode`` whatever the umask (the supervisor runs with 077)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with create_file(tmp, mode, text=True) as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def create_file(path: Path, mode: int, *, text: bool = False, buffering: int = -1) -> Any:
    """A new file at ``path`` (one already there is unlinked first), opened for writing with
    exactly ``mode``: created with it (``O_EXCL``, so no other process can hold an fd opened
    while it was readable) and set again past the umask."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        return os.fdopen(fd, "w" if text else "wb", buffering=buffering)
    except BaseException:
        os.close(fd)
        raise


def restrict(directory: Path, dir_mode: int, private: tuple[str, ...]) -> None:
    """Give ``directory`` ``dir_mode`` and the files named ``private`` in it PRIVATE_MODE, where
    they differ: what older versions made (0755 directories, 0644 disks) is fixed when it is
    next used. Only the owner may chmod, so files of other owners are left as they are."""
    _chmod_if_owned(directory, dir_mode)
    for name in private:
        _chmod_if_owned(directory / name, PRIVATE_MODE)


def _chmod_if_owned(path: Path, mode: int) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if st.st_mode & 0o7777 != mode and st.st_uid == os.geteuid() and not os.path.islink(path):
        os.chmod(path, mode)


@contextmanager
def unix_socket_address(path: Path) -> Iterator[str]:
    """The address to bind or connect a unix socket at ``path``: the path itself, or, when it is
    longer than sun_path allows, the same file reached through ``/proc/self/fd/<dirfd>`` (the
    directory fd stays open while the address is in use)."""
    target = str(path)
    if len(target.encode()) <= 100:
        yield target
        return
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{dir_fd}/{path.name}"
    finally:
        os.close(dir_fd)
