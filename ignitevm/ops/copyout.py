"""`ignite cp VM:PATH HOST`: unpacking the tar stream a VM sends, as `docker cp` does, treating
the guest as hostile (docs/network.md "ignite cp").

Nothing in the stream is trusted: every entry must lie below the one top-level entry (no
absolute names, no ``..``); regular files, directories and hard links to files of the same
stream are written; symbolic links are kept only when they resolve inside the copied tree (made
last, so no entry is ever written through one); device nodes, FIFOs and sockets are skipped;
setuid/setgid/sticky bits and the guest's owners are dropped unless ``archive`` (-a) asks for
them; a header longer than any real name is refused; and the copy stops before the
destination's filesystem fills up. Everything is unpacked into a fresh directory of the caller
(``work``) and moved into place only when the stream ended well (``place``)."""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ignitevm.errors import IgniteError

log = logging.getLogger(__name__)

MAX_HEADER = 64 << 10  # a pax or GNU long-name header; a real one is a few hundred bytes
NAME_MAX = 255
PATH_MAX = 4096
RESERVE_MIN = 64 << 20  # the destination keeps this much free space at least ...
RESERVE_FRACTION = 0.02  # ... or this share of its filesystem, whichever is more
CHECK_BYTES = 8 << 20  # free space is checked after every this many bytes written
CHECK_ENTRIES = 256  # ... and entries made
_CHUNK = 1 << 20
_LONG_HEADERS = frozenset(
    {tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
     tarfile.SOLARIS_XHDTYPE}
)  # fmt: skip


class CopyError(IgniteError):
    """The VM sent something the host does not take, or the copy could not be written."""


class _GuardedTarInfo(tarfile.TarInfo):
    """Refuses a long-name or pax header bigger than MAX_HEADER before tarfile reads it into
    memory (a guest could announce gigabytes)."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> Any:
        if self.type in _LONG_HEADERS and self.size > MAX_HEADER:
            raise tarfile.HeaderError(f"a {self.size}-byte extended header")
        return super()._proc_member(tarfile_)  # type: ignore[misc]


@dataclass
class _Pending:
    """Metadata applied after the entries are written: dirs last (they may be read-only)."""

    # None: a parent no entry described (made 0755, as tar does)
    dirs: dict[str, tarfile.TarInfo | None] = field(default_factory=dict)
    links: list[tuple[str, str, tarfile.TarInfo]] = field(default_factory=list)
    files: set[str] = field(default_factory=set)  # regular files written (hard link targets)


class Unpacker:
    """Unpacks one stream into ``work/<root_name>``; ``skipped`` says what was left out."""

    def __init__(self, work: Path, root_name: str, *, archive: bool = False) -> None:
        if root_name in ("", ".", "..") or "/" in root_name:
            raise CopyError(f"cannot copy to the name {root_name!r}")
        self.work = work
        self.root_name = root_name
        self.archive = archive
        self.skipped: list[str] = []
        self._guest_root: str | None = None
        self._pending = _Pending()
        self._written = 0
        self._entries = 0
        self._chown_failed = False

    # -- names ------------------------------------------------------------------------------

    def _relative(self, name: str) -> str:
        """The entry's path below ``work`` (starting with root_name), or CopyError."""
        if name.startswith("/") or "\0" in name or len(name) > PATH_MAX:
            raise CopyError(f"the VM sent an unsafe entry name {name[:200]!r}")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if not parts or ".." in parts or any(len(p.encode()) > NAME_MAX for p in parts):
            raise CopyError(f"the VM sent an unsafe entry name {name[:200]!r}")
        if self._guest_root is None:
            self._guest_root = parts[0]
        if parts[0] != self._guest_root:
            raise CopyError(
                f"the VM sent {name[:200]!r} outside the copied {self._guest_root[:200]!r}"
            )
        return "/".join([self.root_name, *parts[1:]])

    def _path(self, rel: str) -> Path:
        return self.work / rel

    # -- entries ----------------------------------------------------------------------------

    def unpack(self, stream: IO[bytes]) -> list[str]:
        """Read the whole stream; raises CopyError (or IgniteError) on anything refused."""
        try:
            with tarfile.open(fileobj=stream, mode="r|", tarinfo=_GuardedTarInfo) as tar:
                for member in tar:
                    self._entry(tar, member)
        except tarfile.TarError as exc:
            raise CopyError(f"the VM sent a broken archive: {exc}") from None
        if self._guest_root is None:
            raise CopyError("the VM sent nothing")
        self._finish()
        return self.skipped

    def _entry(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        rel = self._relative(member.name)
        self._entries += 1
        if self._entries % CHECK_ENTRIES == 0:
            self._check_space()
        if member.isdir():
            self._make_dirs(rel)
            self._pending.dirs[rel] = member
        elif member.isreg():
            self._write_file(tar, member, rel)
        elif member.islnk():
            self._hard_link(member, rel)
        elif member.issym():
            self._make_dirs(posixpath.dirname(rel))
            self._pending.links.append((rel, member.linkname, member))
        else:
            kind = "a device node" if member.ischr() or member.isblk() else "a FIFO or special file"
            self.skipped.append(f"{rel} ({kind})")

    def _make_dirs(self, rel: str) -> None:
        """Create rel and its parents (0700 until _finish gives them their modes). No symlink
        exists under work while entries are written, so nothing here follows one."""
        path = self._path(rel)
        if path.is_dir() and not path.is_symlink():
            return
        parent = posixpath.dirname(rel)
        if parent:
            self._make_dirs(parent)
        if os.path.lexists(path):
            os.unlink(path)  # a later directory entry replaces a file, as tar does
            self._pending.files.discard(rel)
        os.mkdir(path, 0o700)
        self._pending.dirs.setdefault(rel, None)

    def _replaceable(self, rel: str) -> bool:
        path = self._path(rel)
        if not os.path.lexists(path):
            return True
        if path.is_dir() and not path.is_symlink():
            self.skipped.append(f"{rel} (a file where the VM sent a directory before)")
            return False
        os.unlink(path)
        self._pending.files.discard(rel)
        return True

    def _write_file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, rel: str) -> None:
        self._make_dirs(posixpath.dirname(rel))
        if not self._replaceable(rel):
            return
        src = tar.extractfile(member)
        assert src is not None
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self._path(rel), flags, 0o600)
        try:
            while chunk := src.read(_CHUNK):
                _write_all(fd, chunk)
                before, self._written = self._written, self._written + len(chunk)
                if before // CHECK_BYTES != self._written // CHECK_BYTES:
                    self._check_space()
            self._apply(fd, None, member)
        finally:
            os.close(fd)
        self._pending.files.add(rel)

    def _hard_link(self, member: tarfile.TarInfo, rel: str) -> None:
        try:
            target = self._relative(member.linkname)
        except CopyError:
            self.skipped.append(f"{rel} (a hard link to {member.linkname[:200]!r})")
            return
        if target not in self._pending.files:
            self.skipped.append(f"{rel} (a hard link to {target!r}, not a copied file)")
            return
        self._make_dirs(posixpath.dirname(rel))
        if self._replaceable(rel):
            os.link(self._path(target), self._path(rel), follow_symlinks=False)
            self._pending.files.add(rel)

    # -- after the last entry ---------------------------------------------------------------

    def _finish(self) -> None:
        self._make_links()
        for rel in sorted(self._pending.dirs, key=lambda r: r.count("/"), reverse=True):
            info = self._pending.dirs[rel]
            if info is None:
                os.chmod(self._path(rel), 0o755)
            else:
                self._apply(None, self._path(rel), info)

    def _make_links(self) -> None:
        made: list[str] = []
        root = self.root_name
        for rel, target, member in self._pending.links:
            where = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
            if target.startswith("/") or not (where == root or where.startswith(root + "/")):
                self.skipped.append(f"{rel} (a symbolic link to {target[:200]!r}, outside)")
                continue
            if not self._replaceable(rel):
                continue
            os.symlink(target, self._path(rel))
            if self.archive:
                self._chown(None, self._path(rel), member)
            made.append(rel)
        # a link can leave the tree through another one ("a -> .", "b -> a/.."): what counts is
        # where each resolves once all exist; removing one can only make others dangle
        top = os.path.realpath(self._path(root))
        changed = True
        while changed:
            changed = False
            for rel in list(made):
                real = os.path.realpath(self._path(rel))
                if real != top and not real.startswith(top + os.sep):
                    os.unlink(self._path(rel))
                    made.remove(rel)
                    self.skipped.append(f"{rel} (a symbolic link that resolves outside)")
                    changed = True

    def _apply(self, fd: int | None, path: Path | None, info: tarfile.TarInfo) -> None:
        """Owner (archive only), mode and mtime of a written file (fd) or directory (path)."""
        mode = info.mode & (0o7777 if self.archive else 0o777)
        if self.archive:
            self._chown(fd, path, info)  # before chmod: chown clears setuid/setgid
        target: int | Path = fd if fd is not None else path  # type: ignore[assignment]
        os.chmod(target, mode)
        mtime = max(0, min(int(info.mtime), 2**40))
        os.utime(target, (mtime, mtime))

    def _chown(self, fd: int | None, path: Path | None, info: tarfile.TarInfo) -> None:
        try:
            if fd is not None:
                os.fchown(fd, info.uid, info.gid)
            else:
                os.chown(path, info.uid, info.gid, follow_symlinks=False)  # type: ignore[arg-type]
        except OSError as exc:
            if not self._chown_failed:
                self._chown_failed = True
                log.warning("cannot keep the VM's owners (%s): files stay yours", exc.strerror)

    def _check_space(self) -> None:
        st = os.statvfs(self.work)
        free = st.f_bavail * st.f_frsize
        reserve = max(RESERVE_MIN, int(st.f_blocks * st.f_frsize * RESERVE_FRACTION))
        if free < reserve or (st.f_files and st.f_favail < CHECK_ENTRIES * 4):
            raise CopyError(
                f"copying stopped: the filesystem of {self.work.parent} is nearly full "
                f"({free >> 20} MiB free) after {self._written >> 20} MiB from the VM",
                hint="free some space, or copy less at a time",
            )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def place(got: Path, final: Path) -> None:
    """Move the unpacked ``got`` to ``final``: a directory merges into an existing directory
    (as cp -a and docker cp do), anything else replaces what is there. Below ``final`` no
    existing symlink is followed: it is replaced like a file."""
    if not os.path.lexists(final):
        _rename(got, final)
        return
    final_is_dir = final.is_dir() and not final.is_symlink()
    if got.is_dir() and not got.is_symlink():
        if not final_is_dir:
            raise CopyError(f"cannot overwrite non-directory {final} with a directory")
        for child in sorted(got.iterdir()):
            place(child, final / child.name)
        return
    if final_is_dir:
        raise CopyError(f"cannot overwrite directory {final} with a file")
    _rename(got, final)


def _rename(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            raise CopyError(
                f"cannot move the copy to {dst}: another filesystem is mounted there",
                hint="copy to the mounted directory itself",
            ) from None
        raise CopyError(f"cannot write {dst}: {exc.strerror}") from None


def describe_skipped(skipped: list[str], limit: int = 5) -> str:
    shown = "; ".join(skipped[:limit])
    more = f"; and {len(skipped) - limit} more" if len(skipped) > limit else ""
    return shown + more
