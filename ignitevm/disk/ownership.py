"""Owners, modes, device nodes and privileged xattrs written into an ext4 image after
``mkfs.ext4 -d``, with e2fsprogs' ``debugfs -w``: it edits a file we own, so it needs no
privilege (docs/images.md "Imports without root").

An unprivileged import cannot chown, mknod a device or set ``security.*`` xattrs while it
unpacks. It unpacks as the user, records per host inode what the tar says (``OwnerTable``),
and ``apply_ownership`` writes that into the image: the guest sees the image exactly as a root
import would have made it, with no /etc/subuid range and no user namespace.

debugfs reads one request per line and parses double quotes (``""`` is a literal quote), so
every path is quoted; a name holding a newline cannot be written on a request line at all and is
reached by its inode number instead (``ls -p -r`` of its parent), so no name from an image can
inject a request (``write``/``dump`` would reach host files).
"""

from __future__ import annotations

import logging
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from ignitevm import proc
from ignitevm.errors import IgniteError

log = logging.getLogger(__name__)

Key = tuple[int, int]  # (st_dev, st_ino) of the unpacked entry on the host
Parts = tuple[bytes, ...]
_UNSAFE = (b"\n", b"\r")  # debugfs ends a request line at either
_DEVICE_TYPES = {"c": stat.S_IFCHR, "b": stat.S_IFBLK}
# `ls -p -r`: /ino/mode/uid/gid/name/size/ (a directory's size is empty); names have no '/'
_LS_ENTRY = re.compile(rb"/(\d+)/([0-7]+)/(-?\d+)/(-?\d+)/([^/]*)/(\d*)/\n")


@dataclass(frozen=True)
class Wanted:
    """What the image says about one inode."""

    uid: int = 0
    gid: int = 0
    mode: int | None = None  # permission bits (07777); None: as unpacked
    device: tuple[str, int, int] | None = None  # ("c"|"b", major, minor): a placeholder file
    mtime: int | None = None  # seconds; devices only (they are created anew in the image)
    xattrs: tuple[tuple[str, bytes], ...] = ()  # the ones the user could not set


DEFAULT = Wanted()  # what a root import gives an entry no layer describes: root's, as unpacked


class OwnerTable:
    """Wanted attributes by host inode. Every inode the unpacker creates is recorded when it is
    created, so a recycled inode number never keeps a removed entry's record."""

    def __init__(self) -> None:
        self._by_key: dict[Key, Wanted] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def record(self, st: os.stat_result, wanted: Wanted) -> None:
        self._by_key[(st.st_dev, st.st_ino)] = wanted

    def set_mode(self, st: os.stat_result, mode: int) -> None:
        key = (st.st_dev, st.st_ino)
        self._by_key[key] = replace(self._by_key.get(key, DEFAULT), mode=mode)

    def add_xattr(self, st: os.stat_result, name: str, value: bytes) -> None:
        key = (st.st_dev, st.st_ino)
        old = self._by_key.get(key, DEFAULT)
        self._by_key[key] = replace(old, xattrs=(*old.xattrs, (name, value)))

    def get(self, st: os.stat_result) -> Wanted:
        return self._by_key.get((st.st_dev, st.st_ino), DEFAULT)


def apply_ownership(image: Path, rootfs: Path, table: OwnerTable) -> int:
    """Make the ext4 ``image`` (built from ``rootfs`` by ``mkfs.ext4 -d -E root_owner=0:0``)
    carry the owners, modes, devices and xattrs of ``table``; returns the requests run."""
    debugfs = proc.require_tool("debugfs")
    with tempfile.TemporaryDirectory(prefix="owners-", dir=image.parent) as work:
        script = _Script(debugfs, image, Path(work))
        seen: set[Key] = set()
        for parts, st in walk(rootfs):
            key = (st.st_dev, st.st_ino)
            wanted = table.get(st)
            if wanted.device is not None:
                script.device(parts, st, wanted)
            elif key not in seen:
                script.inode(parts, st, wanted)
            seen.add(key)
        return script.run()


def walk(rootfs: Path) -> Iterator[tuple[Parts, os.stat_result]]:
    """Every entry below ``rootfs`` (itself first, as ``()``), symlinks not followed."""
    top = os.fsencode(rootfs)
    yield (), os.lstat(top)
    stack: list[tuple[bytes, Parts]] = [(top, ())]
    while stack:
        path, parts = stack.pop()
        with os.scandir(path) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                child = (*parts, entry.name)
                yield child, st
                if stat.S_ISDIR(st.st_mode):
                    stack.append((entry.path, child))


@dataclass(frozen=True)
class Listed:
    ino: int
    mode: int
    uid: int
    gid: int


def list_dir(debugfs: str, image: Path, target: bytes) -> dict[bytes, Listed]:
    """The entries of a directory of ``image`` (``target``: a quoted path or ``<ino>``), names
    raw (``ls -p -r``), "." and ".." included."""
    out = proc.run([debugfs, "-R", os.fsdecode(b"ls -p -r " + target), image])
    entries: dict[bytes, Listed] = {}
    pos, data = 0, out.stdout
    while (m := _LS_ENTRY.match(data, pos)) is not None:
        ino, mode, uid, gid = (int(m.group(i), 8 if i == 2 else 10) for i in (1, 2, 3, 4))
        entries[m.group(5)] = Listed(ino, mode, uid, gid)
        pos = m.end()
    return entries


def quote(text: bytes) -> bytes:
    """A debugfs argument: double quotes, a quote doubled (lib/ss/parse.c)."""
    if any(c in text for c in _UNSAFE):
        raise ValueError("a debugfs request cannot carry a newline")
    return b'"' + text.replace(b'"', b'""') + b'"'


def is_safe(parts: Parts) -> bool:
    return not any(c in p for p in parts for c in _UNSAFE)


class _Script:
    """The requests for one image, in a file run by one ``debugfs -w -f``."""

    def __init__(self, debugfs: str, image: Path, work: Path) -> None:
        self.debugfs, self.image, self.work = debugfs, image, work
        self.lines: list[bytes] = []
        self._inodes: dict[Parts, int] = {}
        self._listings: dict[Parts, dict[bytes, int]] = {}
        self._values = 0

    def inode(self, parts: Parts, st: os.stat_result, wanted: Wanted) -> None:
        # mkfs copied the host's owner and mode; the root's owner is root_owner=0:0
        has = (0, 0) if not parts else (st.st_uid, st.st_gid)
        keep_mode = stat.S_ISLNK(st.st_mode)  # a symlink's mode means nothing
        self._set(parts, has, st.st_mode, wanted if not keep_mode else replace(wanted, mode=None))

    def device(self, parts: Parts, st: os.stat_result, wanted: Wanted) -> None:
        """The placeholder file becomes the device node (one per name: a hard-linked device
        is the same device under each name)."""
        assert wanted.device is not None
        kind, major, minor = wanted.device
        if not is_safe(parts):
            log.warning("device %r: its name cannot be given to debugfs; left out", parts)
            self.inode(parts, st, Wanted(mode=0))
            return
        path = quote(b"/" + b"/".join(parts))
        self.lines += [
            b"rm %s" % path,
            b"cd %s" % quote(b"/" + b"/".join(parts[:-1])),
            b"mknod %s %s %d %d" % (quote(parts[-1]), kind.encode(), major, minor),
            b"cd /",
        ]
        # debugfs makes the node root's, with no permission bits
        self._set(
            parts,
            (0, 0),
            _DEVICE_TYPES[kind],
            replace(wanted, mode=0o600 if wanted.mode is None else wanted.mode),
        )
        if wanted.mtime is not None:
            self.lines.append(b"sif %s mtime @%d" % (path, wanted.mtime))

    def _set(self, parts: Parts, has: tuple[int, int], st_mode: int, wanted: Wanted) -> None:
        fields: list[tuple[bytes, bytes]] = []
        if wanted.uid != has[0]:
            fields.append((b"uid", b"%d" % wanted.uid))
        if wanted.gid != has[1]:
            fields.append((b"gid", b"%d" % wanted.gid))
        if wanted.mode is not None and wanted.mode != stat.S_IMODE(st_mode):
            fields.append((b"mode", b"0%o" % (stat.S_IFMT(st_mode) | wanted.mode)))
        if not fields and not wanted.xattrs:
            return
        target = self._target(parts)
        self.lines += [b"sif %s %s %s" % (target, name, value) for name, value in fields]
        for attr, data in wanted.xattrs:
            self._values += 1
            value_file = self.work / f"xattr-{self._values}"
            value_file.write_bytes(data)
            self.lines.append(
                b"ea_set -f %s %s %s"
                % (quote(os.fsencode(value_file)), target, quote(attr.encode()))
            )

    def _target(self, parts: Parts) -> bytes:
        if is_safe(parts):
            return quote(b"/" + b"/".join(parts))
        return b"<%d>" % self._inode_of(parts)

    def _inode_of(self, parts: Parts) -> int:
        """The image's inode number of ``parts``, from a listing of its parent."""
        if parts not in self._inodes:
            parent = parts[:-1]
            if parent not in self._listings:
                listing = list_dir(self.debugfs, self.image, self._target(parent))
                self._listings[parent] = {name: e.ino for name, e in listing.items()}
            ino = self._listings[parent].get(parts[-1])
            if ino is None:
                raise IgniteError(f"debugfs does not find {b'/'.join(parts)!r} in {self.image}")
            self._inodes[parts] = ino
        return self._inodes[parts]

    def run(self) -> int:
        if not self.lines:
            return 0
        requests = self.work / "requests"
        requests.write_bytes(b"".join(line + b"\n" for line in self.lines))
        out = proc.run([self.debugfs, "-w", "-f", requests, self.image])
        # debugfs exits 0 whatever its requests did; anything but its banner is a failure
        errors = [
            line
            for line in out.stderr.decode(errors="replace").splitlines()
            if line.strip() and not line.startswith("debugfs ")
        ]
        if errors:
            raise IgniteError(
                f"debugfs could not set the image's owners: {'; '.join(errors[:3])}",
                hint="e2fsprogs >= 1.43 is needed (apt-get install e2fsprogs)",
            )
        log.debug("%d debugfs requests on %s", len(self.lines), self.image)
        return len(self.lines)
