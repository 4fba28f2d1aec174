"""Atomic file writes (a temp file in the same directory, renamed over the target) and the modes
of the state directory's files (docs/architecture.md "State directory")."""

from __future__ import annotations

import json
import os
import struct
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
    if _acl_entries(path):
        # the group bits are the ACL's mask: what grant_read() gave a jailed VMM; only
        # "other" has to go
        mode = mode | (st.st_mode & 0o070)
    if st.st_mode & 0o7777 != mode and st.st_uid == os.geteuid() and not os.path.islink(path):
        os.chmod(path, mode)


# POSIX ACLs as the kernel stores them (xattr system.posix_acl_access): a version, then
# (tag, perm, id) entries sorted by tag and id
_ACL_XATTR = "system.posix_acl_access"
_ACL_VERSION = 2
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_UNDEFINED_ID = 0xFFFFFFFF


def grant_read(path: Path, uid: int) -> None:
    """Let user ``uid`` read the private file ``path`` (a POSIX ACL entry), without making it
    readable by anyone else: a jailed VMM that runs as its own uid and opens a shared read-only
    disk (an image's base) by path. The entry stays for later runs of that jail uid."""
    entries = _acl_entries(path)
    if not entries:
        mode = os.stat(path).st_mode
        entries = {(_USER_OBJ, _UNDEFINED_ID): (mode >> 6) & 7,
                   (_GROUP_OBJ, _UNDEFINED_ID): (mode >> 3) & 7,
                   (_OTHER, _UNDEFINED_ID): mode & 7}  # fmt: skip
    entries[(_USER, uid)] = entries.get((_USER, uid), 0) | 4
    group_class = [p for (tag, _), p in entries.items() if tag in (_USER, _GROUP_OBJ, _GROUP)]
    mask = 0
    for perm in group_class:
        mask |= perm
    entries[(_MASK, _UNDEFINED_ID)] = mask
    data = struct.pack("<I", _ACL_VERSION) + b"".join(
        struct.pack("<HHI", tag, perm, ident) for (tag, ident), perm in sorted(entries.items())
    )
    os.setxattr(path, _ACL_XATTR, data)


def _acl_entries(path: Path) -> dict[tuple[int, int], int]:
    try:
        data = os.getxattr(path, _ACL_XATTR, follow_symlinks=False)
    except OSError:
        return {}
    entries = {}
    for offset in range(4, len(data) - 7, 8):
        tag, perm, ident = struct.unpack_from("<HHI", data, offset)
        entries[(tag, ident)] = perm
    return entries


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
