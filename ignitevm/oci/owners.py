"""Who owns what the layers unpack (docs/images.md "Imports without root").

As root, the unpacker gives every entry the tar's owner and mode and makes its device nodes
(``HostOwners``). Without root it cannot: ``RecordedOwners`` keeps what the tar says, per
inode, in an ``OwnerTable`` that ``disk.ownership`` writes into the ext4 image, and gives the
host copy modes its user can read back (``mkfs.ext4 -d`` runs as that user): u+rw on files,
u+rwx on directories, no set-id bit; a device node is an empty placeholder file.
"""

from __future__ import annotations

import logging
import os
import stat
import tarfile
from typing import Protocol

from ignitevm.disk.ownership import OwnerTable, Wanted

log = logging.getLogger(__name__)


class Owners(Protocol):
    @property
    def table(self) -> OwnerTable | None:
        """What the image must say beyond the host files; None: nothing."""

    def claim(self, fd: int, name: str | None, member: tarfile.TarInfo, mode: int | None) -> None:
        """A new entry (``fd``, or ``name`` in directory ``fd``) gets the tar's owner, and
        ``mode`` (files; directories get theirs at the end, in ``set_dir_mode``)."""

    def set_dir_mode(self, fd: int, mode: int) -> None: ...

    def make_node(self, pfd: int, base: str, member: tarfile.TarInfo) -> bool:
        """A device node or FIFO; False when it could not be made (then it is left out)."""

    def new_dir(self, fd: int) -> None:
        """A parent directory no entry of the layer described, made on the way."""

    def xattr_refused(self, fd: int, member: tarfile.TarInfo, attr: str, value: bytes) -> None:
        """The kernel refused an xattr (``security.*`` and ``trusted.*`` need privilege)."""


def _kind(member: tarfile.TarInfo) -> int:
    if member.isfifo():
        return stat.S_IFIFO
    return stat.S_IFCHR if member.ischr() else stat.S_IFBLK


class HostOwners:
    """Root: the host files carry the image's owners, modes and devices themselves."""

    @property
    def table(self) -> OwnerTable | None:
        return None

    def claim(self, fd: int, name: str | None, member: tarfile.TarInfo, mode: int | None) -> None:
        if name is None:
            os.fchown(fd, member.uid, member.gid)
            if mode is not None:  # after chown, which clears set-id bits
                os.fchmod(fd, mode)
        else:
            os.chown(name, member.uid, member.gid, dir_fd=fd, follow_symlinks=False)

    def set_dir_mode(self, fd: int, mode: int) -> None:
        os.chmod(fd, mode)

    def make_node(self, pfd: int, base: str, member: tarfile.TarInfo) -> bool:
        device = 0 if member.isfifo() else os.makedev(member.devmajor, member.devminor)
        try:
            os.mknod(base, _kind(member) | 0o600, device, dir_fd=pfd)
        except PermissionError:
            # root without CAP_MKNOD (a container): the VM's devtmpfs has the real nodes
            log.debug("not allowed to create device %r; skipped", member.name)
            return False
        self.claim(pfd, base, member, None)
        # The node was just created by us, so following (it is no symlink) is safe.
        os.chmod(base, member.mode & 0o7777, dir_fd=pfd)
        return True

    def new_dir(self, fd: int) -> None:
        pass

    def xattr_refused(self, fd: int, member: tarfile.TarInfo, attr: str, value: bytes) -> None:
        log.debug("cannot set xattr %s on %r", attr, member.name)


def host_mode(mode: int, *, directory: bool) -> int:
    """The mode of the host copy: readable (and walkable) by its owner, no set-id bit."""
    return (mode & 0o777) | (0o700 if directory else 0o600)


class RecordedOwners:
    """Not root: owners, modes, devices and refused xattrs go into ``table``."""

    def __init__(self) -> None:
        self._table = OwnerTable()

    @property
    def table(self) -> OwnerTable:
        return self._table

    def claim(self, fd: int, name: str | None, member: tarfile.TarInfo, mode: int | None) -> None:
        if name is None:
            if mode is not None:
                os.fchmod(fd, host_mode(mode, directory=False))
            st = os.fstat(fd)
        else:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        self._table.record(st, Wanted(member.uid, member.gid, mode))

    def set_dir_mode(self, fd: int, mode: int) -> None:
        os.chmod(fd, host_mode(mode, directory=True))
        self._table.set_mode(os.fstat(fd), mode)

    def make_node(self, pfd: int, base: str, member: tarfile.TarInfo) -> bool:
        mode = member.mode & 0o7777
        if member.isfifo():  # anyone may make a FIFO
            os.mknod(base, stat.S_IFIFO | 0o600, dir_fd=pfd)
            os.chmod(base, host_mode(mode, directory=False), dir_fd=pfd)
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
            self._table.record(st, Wanted(member.uid, member.gid, mode))
            return True
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(base, flags, 0o600, dir_fd=pfd)
        try:
            kind = "c" if member.ischr() else "b"
            device = (kind, member.devmajor, member.devminor)
            wanted = Wanted(member.uid, member.gid, mode, device=device, mtime=int(member.mtime))
            self._table.record(os.fstat(fd), wanted)
        finally:
            os.close(fd)
        return True

    def new_dir(self, fd: int) -> None:
        # as a root import makes it: root's, 0755 (the mode it was made with)
        self._table.record(os.fstat(fd), Wanted())

    def xattr_refused(self, fd: int, member: tarfile.TarInfo, attr: str, value: bytes) -> None:
        self._table.add_xattr(os.fstat(fd), attr, value)


def owners_for(record: bool | None = None) -> Owners:
    """``record``: None = as the process may (root writes owners itself)."""
    if record is None:
        record = os.geteuid() != 0
    return RecordedOwners() if record else HostOwners()
