"""A multi-layer image built by buildah (whiteouts, an opaque directory, hard links,
symlinks, a device, owners) imports to exactly the files buildah and umoci say."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

try:  # tests/ as a package (tests/__init__.py) or as plain directories
    from .fixtures_registry import (
        BuiltImage,
        built_image,
        require_root_and_tools,
        tree_listing,
    )
except ImportError:
    from fixtures_registry import (  # type: ignore[no-redef]
        BuiltImage,
        built_image,
        require_root_and_tools,
        tree_listing,
    )

from ignitevm import proc
from ignitevm.disk.base import build_base_image
from ignitevm.oci import FetchOptions, resolve_image, unpack_image

pytestmark = pytest.mark.integration
__all__ = ["built_image"]  # the fixture, imported for pytest


def _layer_entries(layout: Path) -> set[str]:
    """Every entry name of every layer tar in the layout (to prove what the test covers)."""
    names: set[str] = set()
    for blob in (layout / "blobs/sha256").iterdir():
        out = proc.run(["tar", "-tzf", blob], check=False)
        if out.returncode == 0:
            names.update(out.stdout.decode().split())
    return names


def test_layers_exercise_whiteouts_opaque_and_links(built_image: BuiltImage) -> None:
    entries = _layer_entries(built_image.layout)
    assert ".wh.gone" in entries and ".wh.del" in entries
    assert "opq/.wh..wh..opq" in entries
    merged = built_image.merged
    assert "gone" not in merged and "del" not in merged and "opq/a" not in merged
    assert merged["bin/sh"][0] == "file" and merged["usr/bin/abs"][0] == "symlink"


@pytest.mark.parametrize("form", ["oci", "oci-archive", "docker-archive"])
def test_import_matches_buildah(built_image: BuiltImage, tmp_path: Path, form: str) -> None:
    source = {
        "oci": f"oci:{built_image.layout}:test",
        "oci-archive": f"oci-archive:{built_image.archive}",
        "docker-archive": f"docker-archive:{built_image.docker_archive}",
    }[form]
    opts = FetchOptions(cache_dir=tmp_path / "cache")
    image = resolve_image(source, opts)
    assert len(image.layers) == 3
    unpack_image(image, tmp_path / "rootfs", opts)
    assert tree_listing(tmp_path / "rootfs") == built_image.merged


def test_import_matches_umoci_unpack(built_image: BuiltImage, tmp_path: Path) -> None:
    require_root_and_tools("umoci")
    proc.run(
        ["umoci", "unpack", "--image", f"{built_image.layout}:test", tmp_path / "bundle"],
        timeout=120,
    )
    opts = FetchOptions(cache_dir=tmp_path / "cache")
    unpack_image(resolve_image(f"oci:{built_image.layout}:test", opts), tmp_path / "rootfs", opts)
    assert tree_listing(tmp_path / "rootfs") == tree_listing(tmp_path / "bundle/rootfs")


def test_base_image_holds_the_rootfs(built_image: BuiltImage, tmp_path: Path) -> None:
    require_root_and_tools("mkfs.ext4", "debugfs")
    opts = FetchOptions(cache_dir=tmp_path / "cache")
    unpack_image(resolve_image(f"oci:{built_image.layout}:test", opts), tmp_path / "rootfs", opts)
    image = tmp_path / "image.ext4"
    build_base_image(tmp_path / "rootfs", image)
    # Read the filesystem back without mounting it: debugfs rdump keeps owners and modes.
    (tmp_path / "dump").mkdir()
    proc.run(["debugfs", "-R", f"rdump / {tmp_path / 'dump'}", image])
    dumped = tree_listing(tmp_path / "dump")
    expected = dict(built_image.merged)
    dumped.pop("lost+found")
    # rdump skips special files: check those with debugfs stat.
    for special in ("dev/null", "dev/fifo"):
        expected.pop(special)
    null = proc.output(["debugfs", "-R", "stat /dev/null", image])
    assert "Type: character special" in null and "major/minor number: 01:03" in null
    assert "Type: FIFO" in proc.output(["debugfs", "-R", "stat /dev/fifo", image])
    # rdump writes a copy per hard link; compare the links' contents, not their inodes.
    strip = {k: v[:-1] if v[0] == "file" else v for k, v in expected.items()}
    assert {k: v[:-1] if v[0] == "file" else v for k, v in dumped.items()} == strip
    shutil.rmtree(tmp_path / "dump")
