"""Where a layer entry may be written: its tar name as path components (``..`` refused), and
directories below the root opened one component at a time from an fd on the root with
``O_NOFOLLOW``, so a symlinked parent is refused, never followed, and no entry can reach outside
the root however the layers combine (see docs/images.md, "How layers are applied").
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

from ignitevm.errors import UnsafeLayerError

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

Parts = tuple[str, ...]


def unsafe_entry(layer: str, name: str, why: str) -> UnsafeLayerError:
    return UnsafeLayerError(
        f"layer {layer}: entry {name!r}: {why}",
        hint="the image is malicious or broken; it was not imported",
    )


def split_name(name: str, layer: str) -> Parts:
    """Split a tar member name into components, as tar does: a leading ``/`` and ``.`` are
    dropped; any ``..`` is refused (it could only aim outside or be a trick)."""
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeLayerError(
            f"layer {layer}: entry {name!r} has a '..' component",
            hint="the image is malicious or broken; it was not imported",
        )
    return parts


class RootDir:
    """An fd on the root being unpacked, and directories below it opened without following a
    symlink. The parent directory of the last entry stays open (``parent``): a tar lists the
    entries of one directory together, so most entries reuse it."""

    def __init__(self, root: Path, on_mkdir: Callable[[int], None] | None = None) -> None:
        self.fd = os.open(root, DIR_FLAGS)
        self._on_mkdir = on_mkdir  # told of every directory made on the way (its fd)
        self._cache: tuple[Parts, int] | None = None  # the last resolved parent directory

    def close(self) -> None:
        self.drop_cache()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def release(self, fd: int) -> None:
        """Close a directory ``open_dir`` returned (the root's fd stays open)."""
        if fd != self.fd:
            os.close(fd)

    def parent(self, parts: Parts, layer: str, entry: str) -> int:
        """The fd of an entry's parent directory, created as needed; cached for the next entry,
        so the caller must not close it."""
        if self._cache is not None and self._cache[0] == parts:
            return self._cache[1]
        fd = self.open_dir(parts, create=True, strict=True, layer=layer, entry=entry)
        assert fd is not None
        self.drop_cache()
        self._cache = (parts, fd)
        return fd

    def invalidate(self, removed: Parts) -> None:
        """``removed`` (a directory) is gone: forget the cached parent if it was below it."""
        if self._cache is not None and self._cache[0][: len(removed)] == removed:
            self.drop_cache()

    def drop_cache(self) -> None:
        if self._cache is not None:
            self.release(self._cache[1])
            self._cache = None

    def open_dir(
        self, parts: Parts, *, create: bool, strict: bool, layer: str = "", entry: str = ""
    ) -> int | None:
        """Open ``parts`` below the root without following any symlink; ``release`` it after.

        Missing components are created (``create``) or end the walk with None. A symlink or
        non-directory on the way is refused (``strict``, naming ``layer`` and ``entry``) or ends
        the walk with None.
        """
        cur = self.fd
        try:
            for name in parts:
                try:
                    nfd = os.open(name, DIR_FLAGS, dir_fd=cur)
                except FileNotFoundError:
                    if not create:
                        self.release(cur)
                        return None
                    os.mkdir(name, 0o755, dir_fd=cur)
                    nfd = os.open(name, DIR_FLAGS, dir_fd=cur)
                    if self._on_mkdir is not None:
                        try:
                            self._on_mkdir(nfd)
                        except BaseException:
                            os.close(nfd)
                            raise
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    if not strict:
                        self.release(cur)
                        return None
                    st = os.stat(name, dir_fd=cur, follow_symlinks=False)
                    what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
                    raise unsafe_entry(
                        layer,
                        entry,
                        f"its parent {'/'.join(parts)!r} passes through "
                        f"{name!r}, which is {what}; writing through it is refused",
                    ) from None
                self.release(cur)
                cur = nfd
        except BaseException:
            self.release(cur)
            raise
        return cur
