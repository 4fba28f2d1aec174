"""A shared host directory for a VMM that runs as another user (the jail's per-VM uid): access
for one run with POSIX ACLs, taken back afterwards (docs/runtime.md "Host directories").

QEMU's mapped-xattr backend works on the tree as its own user. When that user does not own the
directory, ``prepare_share`` gives the VMM's uid a named ACL entry on every directory and file
(the rights of each entry's owner, without write on a read-only share) and, on directories, a
default entry, so what the host or the guest creates during the run is reachable too.
``release_share`` removes the entries, restores the masks and the default ACLs as they were,
and hands whatever the VMM created (owned by its uid) to the directory's owner: a uid that a
later VM gets owns nothing here. The directory's ancestors are not touched (the jail mounts the
directory into the VMM's mount namespace). A VMM that runs as the directory's owner (no jail,
or a rootless VM) needs none of this.

Everything goes through directory fds and never follows a symlink, so a host user who swaps a
directory for a link while the tree is walked changes nothing outside it. Caveat: while the
run lasts, an ACL mask widens to include the VMM's rights (other named entries of that file may
reach further, as far as the VMM's rights go).
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ACCESS = "system.posix_acl_access"
DEFAULT = "system.posix_acl_default"
_HEADER, _ENTRY = struct.Struct("<I"), struct.Struct("<HHI")
_VERSION = 2
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_NONE = 0xFFFFFFFF  # ACL_UNDEFINED_ID
Entry = tuple[int, int, int]  # (tag, perm, id)
Key = tuple[int, int]  # (st_dev, st_ino)


def decode(data: bytes) -> list[Entry]:
    if len(data) < 4 or _HEADER.unpack_from(data)[0] != _VERSION or (len(data) - 4) % 8:
        raise ValueError("not a POSIX ACL (version 2)")
    return [_ENTRY.unpack_from(data, off) for off in range(4, len(data), 8)]


def encode(entries: list[Entry]) -> bytes:
    ordered = sorted(entries, key=lambda e: (e[0], e[2]))
    return _HEADER.pack(_VERSION) + b"".join(_ENTRY.pack(*e) for e in ordered)


def from_mode(mode: int) -> list[Entry]:
    return [(USER_OBJ, mode >> 6 & 7, _NONE), (GROUP_OBJ, mode >> 3 & 7, _NONE),
            (OTHER, mode & 7, _NONE)]  # fmt: skip


def _mask(entries: list[Entry]) -> int | None:
    return next((p for tag, p, _ in entries if tag == MASK), None)


def with_user(entries: list[Entry], uid: int, perm: int) -> list[Entry]:
    """``entries`` plus ``user:uid:perm``; the mask grows by ``perm`` (from the group class)."""
    old = _mask(entries)
    rest = [e for e in entries if e[0] != MASK and not (e[0] == USER and e[2] == uid)]
    group_class = [p for tag, p, _ in rest if tag in (GROUP_OBJ, GROUP, USER)]
    mask = (old if old is not None else _or(group_class)) | perm
    return [*rest, (USER, perm, uid), (MASK, mask, _NONE)]


def without_user(entries: list[Entry], uid: int, mask: int | None) -> list[Entry]:
    """``entries`` without ``uid``'s entry; ``mask``: the one to put back (None: the group
    class's), dropped when no named entry is left (the kernel then keeps only the mode)."""
    rest = [e for e in entries if e[0] != MASK and not (e[0] == USER and e[2] == uid)]
    if not any(tag in (USER, GROUP) for tag, _, _ in rest):
        return rest
    group_class = [p for tag, p, _ in rest if tag in (GROUP_OBJ, GROUP, USER)]
    return [*rest, (MASK, _or(group_class) if mask is None else mask, _NONE)]


def _or(perms: list[int]) -> int:
    out = 0
    for p in perms:
        out |= p
    return out


@dataclass
class Grant:
    """What ``prepare_share`` changed, for ``release_share``: per inode, the access mask and
    whether a default ACL was there (and its mask) before the run."""

    path: Path
    uid: int
    gid: int
    before: dict[Key, tuple[int | None, bool, int | None]] = field(default_factory=dict)
    # False: rebuilt after a crash (``before`` unknown): every default ACL is kept, only the
    # VMM's entries go
    complete: bool = True


def prepare_share(path: Path, uid: int, gid: int, *, readonly: bool) -> Grant | None:
    """Let ``uid`` (the VMM) reach the tree at ``path`` for one run; None when it needs
    nothing (it runs as the directory's owner or as root)."""
    if uid == 0 or uid == os.stat(path).st_uid:
        return None
    grant = Grant(path, uid, gid)
    for _parent, entries in _walk(path):
        for target, est in entries:
            perm = est.st_mode >> 6 & 7 & (5 if readonly else 7)
            old = _read(target, ACCESS)
            _write(target, ACCESS, with_user(old or from_mode(est.st_mode), uid, perm))
            default, had_default = None, False
            if stat.S_ISDIR(est.st_mode):
                default = _read(target, DEFAULT)
                had_default = default is not None
                base = default or from_mode(est.st_mode)
                _write(target, DEFAULT, with_user(base, uid, 5 if readonly else 7))
            key = (est.st_dev, est.st_ino)
            grant.before[key] = (_mask(old or []), had_default, _mask(default or []))
    return grant


def release_share(grant: Grant) -> None:
    """Undo ``prepare_share`` after the run (the VMM has exited), whatever changed since."""
    root = os.stat(grant.path)
    had: dict[str, bool] = {}  # directory path -> it had a default ACL before (new: its parent's)
    for parent, entries in _walk(grant.path):
        for target, est in entries:
            _give_back(target, est, grant, root)
            key = (est.st_dev, est.st_ino)
            inherited = had.get(os.path.dirname(parent), not grant.complete)
            old_mask, had_default, default_mask = grant.before.get(key, (None, inherited, None))
            current = _read(target, ACCESS)
            if current is not None:
                _write(target, ACCESS, without_user(current, grant.uid, old_mask))
            if stat.S_ISDIR(est.st_mode):
                had[parent] = had_default
                _restore_default(target, grant.uid, had_default, default_mask)


def _give_back(target: int | str, est: os.stat_result, grant: Grant, root: os.stat_result) -> None:
    """What the VMM created goes to the directory's owner (the uid may be another VM's next)."""
    uid = root.st_uid if est.st_uid == grant.uid else -1
    gid = root.st_gid if est.st_gid == grant.gid else -1
    if uid != -1 or gid != -1:
        if isinstance(target, int):
            os.chown(target, uid, gid)
        else:
            os.chown(target, uid, gid, follow_symlinks=False)


def _restore_default(target: int | str, uid: int, had_default: bool, mask: int | None) -> None:
    current = _read(target, DEFAULT)
    if current is None:
        return
    if not had_default:
        if isinstance(target, int):
            os.removexattr(target, DEFAULT)
        else:
            os.removexattr(target, DEFAULT, follow_symlinks=False)
        return
    _write(target, DEFAULT, without_user(current, uid, mask))


def _read(target: int | str, name: str) -> list[Entry] | None:
    try:
        if isinstance(target, int):
            return decode(os.getxattr(target, name))
        return decode(os.getxattr(target, name, follow_symlinks=False))
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP):
            return None
        raise


def _write(target: int | str, name: str, entries: list[Entry]) -> None:
    if isinstance(target, int):
        os.setxattr(target, name, encode(entries))
    else:
        os.setxattr(target, name, encode(entries), follow_symlinks=False)


def _walk(path: Path) -> Iterator[tuple[str, list[tuple[int | str, os.stat_result]]]]:
    """Per directory (top-down): its path and its entries to act on, the directory itself as
    its fd and each regular file as ``/proc/self/fd/<dir fd>/<name>`` (the *xattr calls take
    no dir_fd; the last component is not followed). No ACL goes on a symlink; devices and
    FIFOs are not shared content."""
    for root, _dirs, files, dfd in os.fwalk(path, follow_symlinks=False):
        entries: list[tuple[int | str, os.stat_result]] = [(dfd, os.fstat(dfd))]
        for name in files:
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                entries.append((f"/proc/self/fd/{dfd}/{name}", st))
        yield root, entries
