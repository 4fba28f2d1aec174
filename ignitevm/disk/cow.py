"""Per-VM copy-on-write disks over an image's read-only base (docs/architecture.md "Providers")."""

from __future__ import annotations

import os
from pathlib import Path

from ignitevm import proc
from ignitevm.errors import ValidationError
from ignitevm.fsutil import PRIVATE_MODE, create_file


def create_qcow2_overlay(base: Path, out: Path, size_bytes: int, base_format: str = "raw") -> None:
    """A qcow2 overlay whose backing file is ``base`` (a raw image, or a snapshot's qcow2
    layer) and whose virtual size is ``size_bytes``: O(1) whatever the image size. The guest
    grows its filesystem to fit."""
    base_size = base.stat().st_size if base_format == "raw" else 0
    if size_bytes < base_size:
        raise ValidationError(
            f"disk size {size_bytes} bytes is smaller than the image ({base_size} bytes)",
            hint=f"use --size {-(-base_size // 2**20)}MB or more",
        )
    tmp = out.with_name(out.name + ".tmp")
    # made private before qemu-img writes into it: the guest's writes land in this inode
    create_file(tmp, PRIVATE_MODE).close()
    proc.run(
        [
            proc.require_tool("qemu-img"),
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            base_format,
            "-b",
            str(base.resolve()),
            "-o",
            "cluster_size=65536,lazy_refcounts=on",
            str(tmp),
            str(size_bytes),
        ]
    )
    os.replace(tmp, out)


def create_sparse_ext4(out: Path, size_bytes: int, label: str) -> None:
    """A sparse, empty ext4 file (the writable disk of the ``overlay`` copy-on-write mode)."""
    tmp = out.with_name(out.name + ".tmp")
    with create_file(tmp, PRIVATE_MODE) as f:  # private: the guest's writes land in it
        f.truncate(size_bytes)
    proc.run(
        [
            proc.require_tool("mkfs.ext4"),
            "-q",
            "-F",
            "-L",
            label,
            "-J",
            "size=16",
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0",
            str(tmp),
        ]
    )
    os.replace(tmp, out)
