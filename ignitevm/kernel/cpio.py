"""A deterministic writer (and a small reader) for the newc cpio format the kernel unpacks.

Written in Python so building an initramfs needs no ``cpio`` tool and gives byte-identical output
for identical input: every entry gets mtime 0, uid/gid 0 and a sequential inode number.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

from ignitevm.errors import IgniteError

_MAGIC = b"070701"
_TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class CpioEntry:
    """One archive member as read back by :func:`read_cpio`."""

    name: str
    mode: int
    data: bytes
    nlink: int = 1

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)


def _pad4(n: int) -> bytes:
    return b"\0" * ((4 - n % 4) % 4)


class CpioWriter:
    """Stream newc entries to ``fh``; parents of every path are created on demand (mode 0755)."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._ino = 0
        self._seen: set[str] = set()
        self._closed = False

    @staticmethod
    def _norm(path: str) -> str:
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if ".." in parts or not parts:
            raise IgniteError(f"invalid path in initramfs: {path!r}")
        return "/".join(parts)

    def _header(self, name: str, mode: int, size: int, rdev: tuple[int, int] = (0, 0)) -> None:
        self._ino += 1
        encoded = name.encode() + b"\0"
        nlink = 2 if stat.S_ISDIR(mode) else 1
        fields = (self._ino, mode, 0, 0, nlink, 0, size, 0, 0, *rdev, len(encoded), 0)
        header = _MAGIC + b"".join(b"%08X" % f for f in fields)
        self._fh.write(header + encoded + _pad4(len(header) + len(encoded)))

    def _ensure_parents(self, name: str) -> None:
        parent = PurePosixPath(name).parent
        missing = []
        while str(parent) not in (".", "") and str(parent) not in self._seen:
            missing.append(str(parent))
            parent = parent.parent
        for p in reversed(missing):
            self._seen.add(p)
            self._header(p, stat.S_IFDIR | 0o755, 0)

    def directory(self, path: str, mode: int = 0o755) -> None:
        name = self._norm(path)
        if name in self._seen:
            return
        self._ensure_parents(name)
        self._seen.add(name)
        self._header(name, stat.S_IFDIR | (mode & 0o7777), 0)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        name = self._norm(path)
        self._ensure_parents(name)
        self._seen.add(name)
        self._header(name, stat.S_IFREG | (mode & 0o7777), len(data))
        self._fh.write(data + _pad4(len(data)))

    def symlink(self, path: str, target: str) -> None:
        name = self._norm(path)
        self._ensure_parents(name)
        self._seen.add(name)
        data = target.encode()
        self._header(name, stat.S_IFLNK | 0o777, len(data))
        self._fh.write(data + _pad4(len(data)))

    def device(self, path: str, *, char: bool, major: int, minor: int, mode: int = 0o600) -> None:
        """A device node: the kernel opens /dev/console from the initramfs before /init runs."""
        name = self._norm(path)
        self._ensure_parents(name)
        self._seen.add(name)
        kind = stat.S_IFCHR if char else stat.S_IFBLK
        self._header(name, kind | (mode & 0o7777), 0, (major, minor))

    def close(self) -> None:
        """Write the trailer (no 512-byte padding: the kernel does not need it)."""
        if not self._closed:
            self._header(_TRAILER, 0, 0)
            self._closed = True


def read_cpio(data: bytes) -> Iterator[CpioEntry]:
    """Yield the entries of (possibly concatenated) newc archives; used by tests and checks."""
    pos = 0
    while pos < len(data):
        if data[pos : pos + 4] == b"\0\0\0\0":  # padding between concatenated archives
            pos += 4
            continue
        if data[pos : pos + 6] != _MAGIC:
            raise IgniteError(f"not a newc cpio archive at offset {pos}")
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, nlink, size, namesize = fields[1], fields[4], fields[6], fields[11]
        name_start = pos + 110
        name = data[name_start : name_start + namesize - 1].decode()
        body = name_start + namesize
        body += (4 - body % 4) % 4
        payload = data[body : body + size]
        pos = body + size
        pos += (4 - pos % 4) % 4
        if name != _TRAILER:
            yield CpioEntry(name=name, mode=mode, data=payload, nlink=nlink)
