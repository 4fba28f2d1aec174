"""The ext4 base image built by mkfs.ext4 -d (no mounting, no root needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ignitevm import proc
from ignitevm.disk.base import TreeUsage, build_base_image, measure_tree, plan_size

pytestmark = pytest.mark.skipif(
    proc.find_tool("mkfs.ext4") is None or proc.find_tool("debugfs") is None,
    reason="needs e2fsprogs (mkfs.ext4, debugfs)",
)


def debugfs(image: Path, command: str) -> str:
    return proc.output([proc.require_tool("debugfs"), "-R", command, image])


def test_build_base_image(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc/hostname").write_text("vm\n")
    (rootfs / "big").write_bytes(os.urandom(3 << 20))
    os.symlink("/etc/hostname", rootfs / "link")
    os.link(rootfs / "big", rootfs / "big2")
    out = tmp_path / "image.ext4"
    size = build_base_image(rootfs, out, label="ignite-image")
    assert size == out.stat().st_size
    assert out.stat().st_blocks * 512 < size  # sparse
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    header = proc.output([proc.require_tool("dumpe2fs"), "-h", out], stderr=proc.DEVNULL)
    assert "Filesystem volume name:   ignite-image" in header
    assert "has_journal" in header
    assert debugfs(out, "cat /etc/hostname") == "vm\n"
    assert 'Fast link dest: "/etc/hostname"' in debugfs(out, "stat /link")
    assert "Links: 2" in debugfs(out, "stat /big")
    assert "User:     0   Group:     0" in debugfs(out, "stat /")
    # free space: at least the slack for a VM's first writes
    free = int(
        next(line for line in header.splitlines() if line.startswith("Free blocks:")).split(":")[1]
    )
    assert free * 4096 > 0.15 * (6 << 20)


def test_plan_size_scales_inodes_for_small_files() -> None:
    size, ratio = plan_size(TreeUsage(blocks=1000, inodes=50_000))
    assert ratio < 16384 and size // ratio >= 50_000
    size, ratio = plan_size(TreeUsage(blocks=100_000, inodes=100))
    assert ratio == 16384 and size >= 100_000 * 4096 * 1.2


def test_measure_tree_counts_hard_links_once(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 5000)
    os.link(tmp_path / "a", tmp_path / "b")
    usage = measure_tree(tmp_path)
    assert usage.inodes == 2 and usage.blocks == 2 + 1
