"""A guest's RAM as a memfd: made by the supervisor and given to QEMU, so a snapshot can copy the
RAM out and a restore can map a snapshot's RAM into many VMs at once (docs/snapshots.md).

Copies are sparse both ways: only the pages the guest touched are read and written, so a
snapshot of a 256 MiB guest that uses 60 MiB stores about 60 MiB. A restore's memfd is sealed
against writes and size changes: each VM maps it privately (copy-on-write), so a VM, even one
whose VMM a hostile guest took over, can change only its own copy of a page.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

MFD_ALLOW_SEALING = 0x2
F_ADD_SEALS, F_GET_SEALS = 1033, 1034
F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE = 0x1, 0x2, 0x4, 0x8


def new_memory(name: str, size: int) -> int:
    """An empty (all holes) memfd of ``size`` bytes that can be sealed later."""
    fd = os.memfd_create(name, MFD_ALLOW_SEALING | os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd


def is_sealed(fd: int) -> bool:
    """Whether ``fd`` is a memfd no one can write any more (safe to map from another VM)."""
    try:
        seals = fcntl.fcntl(fd, F_GET_SEALS)
    except OSError:
        return False
    return seals & F_SEAL_WRITE != 0


def copy_sparse(src: int, dst: int, size: int) -> int:
    """Copy the data ranges of ``src`` (skipping holes) to the same offsets of ``dst``; the
    bytes copied. ``dst`` must already be ``size`` bytes long (holes)."""
    copied = offset = 0
    while offset < size:
        try:
            start = os.lseek(src, offset, os.SEEK_DATA)
        except OSError:  # ENXIO: no data after offset
            break
        end = min(os.lseek(src, start, os.SEEK_HOLE), size)
        os.lseek(dst, start, os.SEEK_SET)
        done = 0
        while done < end - start:
            sent = os.sendfile(dst, src, start + done, end - start - done)
            if sent == 0:
                raise OSError(f"short copy at {start + done} of {end - start} bytes")
            done += sent
        copied += done
        offset = end
    return copied


def save_memory(src: int, size: int, path: Path) -> int:
    """Write the guest RAM in memfd ``src`` to a new sparse file ``path``; bytes written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size)
        return copy_sparse(src, fd, size)
    finally:
        os.close(fd)


def load_memory(path: Path, size: int, name: str, *, seal: bool = True) -> int:
    """A memfd holding the RAM image ``path`` (``size`` bytes); sealed (``seal``: for private
    mappings, shared between VMs) or the VM's own RAM (mapped shared)."""
    fd = new_memory(name, size)
    try:
        src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if os.fstat(src).st_size != size:
                raise OSError(f"{path} holds {os.fstat(src).st_size} bytes, not {size}")
            copy_sparse(src, fd, size)
        finally:
            os.close(src)
        if seal:
            fcntl.fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL)
    except BaseException:
        os.close(fd)
        raise
    return fd
