"""Applying tar layers to a root directory with OCI semantics: files, directories, links,
device nodes, owners, modes, xattrs, whiteouts. Every path goes through layerpath.py, which
never writes outside the root; files are created with ``O_EXCL|O_NOFOLLOW`` after the old entry
is removed (see docs/images.md, "How layers are applied").
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, cast

from ignitevm.errors import IgniteError, UnsafeLayerError
from ignitevm.oci.layerpath import DIR_FLAGS, Parts, RootDir, split_name, unsafe_entry
from ignitevm.oci.owners import Owners, owners_for

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
CHUNK = 1 << 20
_XATTR_PREFIX = "SCHILY.xattr."


def _ns(mtime: float) -> int:
    return int(mtime * 1_000_000_000)


class LayerApplier:
    """Applies layers, in order, into one initially empty root directory.

    Use as a context manager; ``finish()`` sets directory modes and mtimes last, because
    writing into a directory changes its mtime and a read-only mode would block later layers.
    """

    def __init__(self, root: Path, owners: Owners | None = None) -> None:
        self.root = root
        # root: the host files carry owners and devices; else they are recorded (owners.py)
        self.owners = owners or owners_for()
        self.rootdir = RootDir(root, on_mkdir=self.owners.new_dir)
        # Keep other host users out of the tree while it exists: an image's setuid binaries
        # and device nodes must not be reachable through it. (mkfs.ext4 -d gives the image's
        # root directory 0755 whatever the source directory's mode.)
        os.fchmod(self.rootdir.fd, 0o700)
        self._dirs: dict[Parts, tuple[int, int]] = {}  # parts -> (mode, mtime ns)
        self._touched: set[Parts] = set()  # paths present in the current layer
        self._layer = ""

    def __enter__(self) -> LayerApplier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.rootdir.close()

    # -- entry points ---------------------------------------------------------------------

    def apply_tar(self, stream: IO[bytes], layer: str) -> None:
        """Apply one uncompressed tar stream (read sequentially, never seeked)."""
        self._begin(layer)
        try:
            with tarfile.open(fileobj=stream, mode="r|", bufsize=1 << 16) as tar:
                while (member := tar.next()) is not None:
                    cast(Any, tar).members = []  # streaming: do not keep every header in memory
                    self.apply_member(member, tar)
        except (tarfile.TarError, EOFError) as exc:
            raise IgniteError(
                f"layer {layer}: not a valid tar stream: {exc}",
                hint="the layer is corrupt or truncated; fetch the image again",
            ) from exc
        finally:
            self.rootdir.drop_cache()

    def apply_member(
        self, member: tarfile.TarInfo, tar: tarfile.TarFile | None, source: IO[bytes] | None = None
    ) -> None:
        """Apply one entry; its data comes from ``tar`` (streaming) or ``source``."""
        parts = split_name(member.name, self._layer)
        try:
            self._apply(parts, member, tar, source)
        except UnsafeLayerError:
            raise
        except OSError as exc:
            raise IgniteError(
                f"layer {self._layer}: cannot write entry {member.name!r}: {exc}",
                hint="check free space in the state directory",
            ) from exc

    def begin_layer(self, layer: str) -> None:
        self._begin(layer)

    def finish(self) -> None:
        """Set directory modes and mtimes, deepest first."""
        for parts in sorted(self._dirs, key=len, reverse=True):
            mode, mtime = self._dirs[parts]
            fd = self.rootdir.open_dir(parts, create=False, strict=False)
            if fd is None:
                continue  # removed by a later layer, or now a symlink
            try:
                if parts:  # the root stays 0700 (see __init__)
                    self.owners.set_dir_mode(fd, mode)
                os.utime(fd, ns=(mtime, mtime))
            finally:
                self.rootdir.release(fd)
        self._dirs.clear()

    # -- internals ------------------------------------------------------------------------

    def _begin(self, layer: str) -> None:
        self._layer = layer
        self._touched = set()
        self.rootdir.drop_cache()

    def _refuse(self, member: tarfile.TarInfo, why: str) -> UnsafeLayerError:
        return unsafe_entry(self._layer, member.name, why)

    def _apply(
        self,
        parts: Parts,
        member: tarfile.TarInfo,
        tar: tarfile.TarFile | None,
        source: IO[bytes] | None,
    ) -> None:
        if not parts:
            if not member.isdir():
                raise self._refuse(member, "the root can only be a directory")
            self.owners.claim(self.rootdir.fd, None, member, None)
            self._dirs[()] = (member.mode & 0o7777, _ns(member.mtime))
            return
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parts, member)
            return
        pfd = self.rootdir.parent(parts[:-1], self._layer, member.name)
        for i in range(1, len(parts) + 1):
            self._touched.add(parts[:i])
        is_dir = self._clear(pfd, base, member.isdir())
        if member.isreg():
            self._write_file(pfd, base, member, tar, source)
        elif member.isdir():
            if not is_dir:
                os.mkdir(base, 0o700, dir_fd=pfd)
            fd = os.open(base, DIR_FLAGS, dir_fd=pfd)
            try:
                self.owners.claim(fd, None, member, None)
                self._set_xattrs(fd, member)
            finally:
                os.close(fd)
            self._dirs[parts] = (member.mode & 0o7777, _ns(member.mtime))
        elif member.issym():
            os.symlink(member.linkname, base, dir_fd=pfd)
            self.owners.claim(pfd, base, member, None)
            os.utime(
                base, dir_fd=pfd, follow_symlinks=False, ns=(_ns(member.mtime), _ns(member.mtime))
            )
        elif member.islnk():
            self._hardlink(pfd, base, member)
        elif member.ischr() or member.isblk() or member.isfifo():
            self._make_node(pfd, base, member)
        else:
            log.debug(
                "layer %s: skipping entry %r of tar type %r", self._layer, member.name, member.type
            )

    def _write_file(
        self,
        pfd: int,
        base: str,
        member: tarfile.TarInfo,
        tar: tarfile.TarFile | None,
        source: IO[bytes] | None,
    ) -> None:
        fd = os.open(
            base,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=pfd,
        )
        try:
            if member.size:
                self._copy_data(fd, member, tar, source)
            self.owners.claim(fd, None, member, member.mode & 0o7777)
            self._set_xattrs(fd, member)
            os.utime(fd, ns=(_ns(member.mtime), _ns(member.mtime)))
        finally:
            os.close(fd)

    def _copy_data(
        self,
        fd: int,
        member: tarfile.TarInfo,
        tar: tarfile.TarFile | None,
        source: IO[bytes] | None,
    ) -> None:
        if source is None and tar is not None:
            if member.issparse() or tar.fileobj is None:
                source = tar.extractfile(member)
            else:
                # The stream sits at the data right after next(); read it without the extra
                # BufferedReader layer extractfile() would add.
                source = cast(IO[bytes], tar.fileobj)
                source.seek(member.offset_data)
        if source is None:
            raise self._refuse(member, "no data for a regular file")
        remaining = member.size
        while remaining > 0:
            data = source.read(min(CHUNK, remaining))
            if not data:
                raise IgniteError(
                    f"layer {self._layer}: entry {member.name!r} is truncated",
                    hint="the layer is corrupt; fetch the image again",
                )
            remaining -= len(data)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]

    def _hardlink(self, pfd: int, base: str, member: tarfile.TarInfo) -> None:
        target = split_name(member.linkname, self._layer)
        if not target:
            raise self._refuse(member, "hard link to the root directory")
        tfd = self._open_strict(target[:-1], member)
        if tfd is None:
            raise self._refuse(member, f"hard link target {member.linkname!r} is not in the image")
        try:
            try:
                st = os.stat(target[-1], dir_fd=tfd, follow_symlinks=False)
            except FileNotFoundError:
                raise self._refuse(
                    member, f"hard link target {member.linkname!r} is not in the image"
                ) from None
            if stat.S_ISDIR(st.st_mode):
                raise self._refuse(member, f"hard link to directory {member.linkname!r}")
            os.link(target[-1], base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            self.rootdir.release(tfd)

    def _make_node(self, pfd: int, base: str, member: tarfile.TarInfo) -> None:
        if self.owners.make_node(pfd, base, member):
            mtime = _ns(member.mtime)
            os.utime(base, dir_fd=pfd, follow_symlinks=False, ns=(mtime, mtime))

    def _whiteout(self, parts: Parts, member: tarfile.TarInfo) -> None:
        pfd = self._open_strict(parts[:-1], member)
        if pfd is None:
            return  # nothing below to hide
        try:
            if parts[-1] == OPAQUE:
                self._prune(pfd, parts[:-1])
            elif parts[-1].startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
                log.debug("layer %s: ignoring aufs metadata %r", self._layer, member.name)
            else:
                name = parts[-1][len(WHITEOUT_PREFIX) :]
                if name in ("", ".", ".."):
                    raise self._refuse(member, "whiteout of no name, '.' or '..'")
                # A whiteout hides lower layers only, not entries of its own layer.
                target = (*parts[:-1], name)
                if target not in self._touched:
                    self._remove(pfd, name, target)
        finally:
            self.rootdir.release(pfd)

    def _prune(self, dfd: int, parts: Parts) -> None:
        """Opaque directory: remove everything below that this layer did not put there."""
        for name in os.listdir(dfd):
            child = (*parts, name)
            if child not in self._touched:
                self._remove(dfd, name, child)
                continue
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                cfd = os.open(name, DIR_FLAGS, dir_fd=dfd)
                try:
                    self._prune(cfd, child)
                finally:
                    os.close(cfd)

    def _remove(self, dfd: int, name: str, parts: Parts) -> None:
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            self.rootdir.invalidate(parts)
            shutil.rmtree(name, dir_fd=dfd)
        else:
            os.unlink(name, dir_fd=dfd)

    def _clear(self, pfd: int, base: str, want_dir: bool) -> bool:
        """Remove what is at ``base`` unless both it and the new entry are directories.
        Returns whether a directory is kept."""
        try:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if want_dir:
                return True
            # pfd is the cached parent; only a cached path below base is invalid, and the
            # cache holds base's parent, so it stays valid.
            shutil.rmtree(base, dir_fd=pfd)
        else:
            os.unlink(base, dir_fd=pfd)
        return False

    def _open_strict(self, parts: Parts, member: tarfile.TarInfo) -> int | None:
        """An existing directory (None: missing); a symlink on the way is refused."""
        return self.rootdir.open_dir(
            parts, create=False, strict=True, layer=self._layer, entry=member.name
        )

    def _set_xattrs(self, fd: int, member: tarfile.TarInfo) -> None:
        for key, value in member.pax_headers.items():
            if not key.startswith(_XATTR_PREFIX):
                continue
            attr = key[len(_XATTR_PREFIX) :]
            data = value.encode("utf-8", "surrogateescape")
            try:
                os.setxattr(fd, attr, data)
            except OSError:
                self.owners.xattr_refused(fd, member, attr, data)


@contextmanager
def applier(root: Path, owners: Owners | None = None) -> Iterator[LayerApplier]:
    """A LayerApplier for ``root`` whose directory attributes are set on success."""
    with LayerApplier(root, owners) as app:
        yield app
        app.finish()
