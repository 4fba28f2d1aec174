"""The read-only base disk of an image: an ext4 filesystem built from a rootfs directory
with ``mkfs.ext4 -d`` (no mounting, no root needed), sparse, sized to its content; without
root, the owners and devices the host files could not carry are written in afterwards."""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ignitevm import proc
from ignitevm.disk.ownership import OwnerTable, apply_ownership
from ignitevm.errors import CommandError, IgniteError

log = logging.getLogger(__name__)

BLOCK = 4096
MIB = 1 << 20
JOURNAL_MIB = 4  # the base is read-only on the host; a VM's writes land in its overlay
INODE_SIZE = 256
SLACK = 1.2  # room for the VM's first writes before it grows the filesystem
_FIXED_OVERHEAD = 16 * MIB  # journal, superblocks, group descriptors, reserved GDT


@dataclass(frozen=True)
class TreeUsage:
    """What a directory tree needs on ext4: data blocks (4 KiB) and inodes."""

    blocks: int
    inodes: int


def measure_tree(root: Path) -> TreeUsage:
    """Count 4 KiB blocks and inodes below ``root`` (hard links once, symlinks not followed)."""
    blocks = 0
    inodes = 1
    seen: set[tuple[int, int]] = set()
    stack = [os.fspath(root)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                    key = (st.st_dev, st.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                inodes += 1
                if stat.S_ISREG(st.st_mode):
                    blocks += -(-st.st_size // BLOCK)
                elif stat.S_ISDIR(st.st_mode):
                    blocks += 1
                    stack.append(entry.path)
                elif stat.S_ISLNK(st.st_mode) and st.st_size > 59:
                    blocks += 1  # longer targets do not fit in the inode
    return TreeUsage(blocks=blocks + 1, inodes=inodes)


def plan_size(usage: TreeUsage) -> tuple[int, int]:
    """(filesystem bytes, bytes-per-inode ratio) for a tree: content + slack + metadata.

    The ratio, not an inode count, is given to mkfs so a grown filesystem keeps as many
    inodes per byte as the image needed."""
    data = usage.blocks * BLOCK
    # Larger directories and extent blocks make the real usage a bit higher than the sum.
    base = int(data * SLACK) + _FIXED_OVERHEAD + JOURNAL_MIB * MIB
    ratio = 16384
    while ratio > BLOCK and base // ratio < usage.inodes * 1.5:
        ratio //= 2
    base = max(base, int(usage.inodes * 1.5) * ratio)  # many empty files: room for inodes
    size = base + (base // ratio) * INODE_SIZE
    return -(-size // MIB) * MIB, ratio


def build_base_image(
    rootfs: Path, out: Path, *, label: str = "ignite-image", owners: OwnerTable | None = None
) -> int:
    """Build a sparse ext4 image of ``rootfs`` at ``out`` (atomically); return its size.

    ``owners``: what the host files could not carry (an import without root), written into
    the image after mkfs (disk/ownership.py)."""
    if not rootfs.is_dir():
        raise IgniteError(f"{rootfs} is not a directory", hint="unpack the image first")
    mkfs = proc.require_tool("mkfs.ext4")
    size, ratio = plan_size(measure_tree(rootfs))
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        for attempt in range(3):
            _sparse_file(tmp, size)
            try:
                _run_mkfs(mkfs, rootfs, tmp, ratio, label)
                break
            except CommandError as exc:
                full = any(word in exc.stderr.lower() for word in ("space", "allocate"))
                if attempt == 2 or not full:
                    raise
                log.debug("mkfs.ext4 ran out of space at %d bytes; retrying larger", size)
                size = size * 3 // 2
        if owners is not None:
            apply_ownership(tmp, rootfs, owners)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out.stat().st_size


def _sparse_file(tmp: Path, size: int) -> None:
    tmp.unlink(missing_ok=True)
    with open(tmp, "wb") as f:
        f.truncate(size)  # sparse: mkfs -d writes only the blocks it uses


def _run_mkfs(mkfs: str, rootfs: Path, tmp: Path, ratio: int, label: str) -> None:
    proc.run(
        [
            mkfs,
            "-q",
            "-F",
            "-t",
            "ext4",
            "-b",
            str(BLOCK),
            "-I",
            str(INODE_SIZE),
            "-i",
            str(ratio),
            "-J",
            f"size={JOURNAL_MIB}",
            "-L",
            label,
            "-E",
            "root_owner=0:0",
            "-d",
            os.fspath(rootfs),
            os.fspath(tmp),
        ],
        hint="mkfs.ext4 -d needs e2fsprogs >= 1.43; check free space in the state directory",
    )
