"""Layer application: OCI semantics and every way a layer could write outside the root."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

try:  # tests/ as a package (tests/__init__.py) or as plain directories
    from .test_oci_support import (
        chardev,
        dir_,
        fifo,
        hard,
        layer_bytes,
        opaque,
        reg,
        sym,
        tree,
        whiteout,
    )
except ImportError:
    from test_oci_support import (  # type: ignore[no-redef]
        chardev,
        dir_,
        fifo,
        hard,
        layer_bytes,
        opaque,
        reg,
        sym,
        tree,
        whiteout,
    )

from ignitevm.disk.ownership import OwnerTable
from ignitevm.errors import UnsafeLayerError
from ignitevm.oci.layer import applier
from ignitevm.oci.owners import owners_for

Entries = list[tuple[object, bytes]]


def apply(root: Path, *layers: list) -> OwnerTable | None:  # type: ignore[type-arg]
    """Unpack as the process may: as root the host files carry owners and devices, else the
    returned table does (oci/owners.py)."""
    root.mkdir(exist_ok=True)
    owners = owners_for()
    with applier(root, owners) as app:
        for i, entries in enumerate(layers):
            app.apply_tar(io.BytesIO(layer_bytes(entries)), f"layer{i}")
    return owners.table


@pytest.fixture
def box(tmp_path: Path) -> tuple[Path, Path]:
    """A root to unpack into, next to an 'outside' directory with a file attackers aim at."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("root:x:0:0\n")
    return tmp_path / "root", outside


def outside_unchanged(tmp_path: Path) -> None:
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside", "root"]
    assert tree(tmp_path / "outside") == {"passwd": ("file", "0o644", "root:x:0:0\n")}


def test_files_dirs_links_modes_and_mtimes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    table = apply(
        root,
        [
            dir_("./", mode=0o755),
            dir_("etc", mode=0o750, mtime=1_500_000_000),
            reg("etc/hostname", b"vm\n", mode=0o600, mtime=1_400_000_000),
            reg("/bin/tool", b"#!/bin/sh\n", mode=0o4755),  # leading / is stripped, as tar does
            sym("bin/sh", "busybox"),
            hard("bin/tool2", "bin/tool"),
            fifo("run/fifo"),
        ],
    )
    listing = tree(root)
    assert listing["etc"] == ("dir", "0o750")
    assert listing["etc/hostname"] == ("file", "0o600", "vm\n")
    assert listing["bin/sh"] == ("symlink", "busybox")
    if table is None:
        assert listing["bin/tool"][1] == "0o4755"
    else:  # without root the host copy has no set-id bit; the image gets it from the table
        assert listing["bin/tool"][1] == "0o755"
        assert table.get((root / "bin/tool").lstat()).mode == 0o4755
    assert (root / "bin/tool").stat().st_ino == (root / "bin/tool2").stat().st_ino
    assert stat.S_ISFIFO((root / "run/fifo").lstat().st_mode)
    assert (root / "etc").stat().st_mtime == 1_500_000_000
    assert (root / "etc/hostname").stat().st_mtime == 1_400_000_000


def test_whiteouts_delete_lower_files_and_directories(tmp_path: Path) -> None:
    root = tmp_path / "root"
    apply(
        root,
        [reg("a/keep", b"1"), reg("a/gone", b"2"), reg("b/deep/file", b"3"), reg("c", b"4")],
        [whiteout("a/gone"), whiteout("b"), whiteout("nonexistent/x"), reg("c", b"new")],
    )
    assert tree(root) == {
        "a": ("dir", "0o755"),
        "a/keep": ("file", "0o644", "1"),
        "c": ("file", "0o644", "new"),
    }


def test_whiteout_does_not_hide_its_own_layer(tmp_path: Path) -> None:
    root = tmp_path / "root"
    apply(root, [reg("x", b"old")], [reg("x", b"same layer"), whiteout("x")])
    assert (root / "x").read_text() == "same layer"


@pytest.mark.parametrize("marker_first", [True, False])
def test_opaque_directory_hides_lower_content_only(tmp_path: Path, marker_first: bool) -> None:
    root = tmp_path / "root"
    upper = [dir_("d"), reg("d/new", b"n"), reg("d/sub/newer", b"m")]
    upper = [*upper[:1], opaque("d"), *upper[1:]] if marker_first else [*upper, opaque("d")]
    apply(root, [reg("d/old", b"o"), reg("d/sub/older", b"p"), reg("e", b"e")], upper)
    assert sorted(tree(root)) == ["d", "d/new", "d/sub", "d/sub/newer", "e"]


def test_replacing_directories_files_and_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    apply(
        root,
        [reg("x/inner", b"1"), reg("y", b"2"), sym("z", "y")],
        [reg("x", b"now a file"), dir_("y"), reg("z", b"not a link")],
    )
    assert tree(root) == {
        "x": ("file", "0o644", "now a file"),
        "y": ("dir", "0o755"),
        "z": ("file", "0o644", "not a link"),
    }


def test_hardlink_to_lower_layer_and_overwrite_keeps_other_link(tmp_path: Path) -> None:
    root = tmp_path / "root"
    apply(root, [reg("a", b"shared")], [hard("b", "a")], [reg("a", b"replaced")])
    assert (root / "b").read_text() == "shared"
    assert (root / "a").read_text() == "replaced"


def test_xattrs_from_pax_headers(tmp_path: Path) -> None:
    info, data = reg("f", b"x")
    info.pax_headers = {"SCHILY.xattr.user.ignite": "yes"}
    root = tmp_path / "root"
    apply(root, [(info, data)])
    try:
        value = os.getxattr(root / "f", "user.ignite")
    except OSError:
        pytest.skip("the test filesystem has no user xattrs")
    assert value == b"yes"


def test_device_nodes_as_root_placeholders_otherwise(tmp_path: Path) -> None:
    root = tmp_path / "root"
    table = apply(root, [dir_("dev"), chardev("dev/null", 1, 3)])
    node = root / "dev/null"
    if table is not None:  # an empty file the image gets the device for (disk/ownership.py)
        st = node.lstat()
        assert stat.S_ISREG(st.st_mode) and st.st_size == 0
        assert table.get(st).device == ("c", 1, 3)
        return
    st = node.lstat()
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3


# -- malicious layers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "layers",
    [
        pytest.param([[reg("../x", b"evil")]], id="dotdot"),
        pytest.param([[reg("/../../outside/passwd", b"evil")]], id="absolute-dotdot"),
        pytest.param([[reg("a/../../outside/passwd", b"evil")]], id="inner-dotdot"),
        pytest.param([[sym("a", "/OUTSIDE"), reg("a/passwd", b"evil")]], id="abs-symlink-write"),
        pytest.param(
            [[sym("a", "/OUTSIDE")], [reg("a/passwd", b"evil")]], id="abs-symlink-next-layer"
        ),
        pytest.param([[sym("a", "../outside"), reg("a/passwd", b"evil")]], id="rel-symlink-write"),
        pytest.param(
            [[sym("b", ".."), sym("b/c", ".."), reg("b/c/outside/passwd", b"x")]],
            id="symlink-dotdot-chain",
        ),
        pytest.param([[sym("a", "/OUTSIDE"), dir_("a/sub")]], id="mkdir-through-symlink"),
        pytest.param([[sym("a", "/OUTSIDE"), sym("a/passwd", "/x")]], id="symlink-in-symlink"),
        pytest.param([[hard("h", "/etc/passwd")]], id="hardlink-abs-missing"),
        pytest.param([[hard("h", "../outside/passwd")]], id="hardlink-dotdot"),
        pytest.param(
            [[sym("a", "/OUTSIDE"), hard("h", "a/passwd")]], id="hardlink-through-symlink"
        ),
        pytest.param(
            [[sym("a", "/OUTSIDE")], [whiteout("a/passwd")]], id="whiteout-through-symlink"
        ),
        pytest.param([[sym("a", "/OUTSIDE")], [opaque("a")]], id="opaque-through-symlink"),
        pytest.param([[sym("a", "/OUTSIDE")], [reg("a/.wh..wh..opq")]], id="opaque-reg"),
        pytest.param([[reg("f", b"1"), reg("f/x", b"2")]], id="file-as-parent"),
        pytest.param([[reg("d/x", b"1"), reg(".wh...", b"")]], id="whiteout-dotdot"),
        pytest.param([[reg("d/x", b"1"), reg("d/.wh..", b"")]], id="whiteout-dot"),
    ],
)
def test_malicious_layers_are_refused(box: tuple[Path, Path], layers: list) -> None:  # type: ignore[type-arg]
    root, outside = box
    fixed = [
        [
            (sym(i.name, i.linkname.replace("/OUTSIDE", str(outside)))[0], d)
            if i.issym()
            else (i, d)
            for i, d in entries
        ]
        for entries in layers
    ]
    with pytest.raises(UnsafeLayerError) as err:
        apply(root, *fixed)
    assert "layer" in str(err.value) and "entry" in str(err.value)
    outside_unchanged(root.parent)


def test_root_stays_private_while_unpacked(tmp_path: Path) -> None:
    root = tmp_path / "root"
    apply(root, [dir_("./", mode=0o755), reg("bin/su", b"x", mode=0o4755)])
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


def test_symlinks_pointing_out_are_stored_not_followed(box: tuple[Path, Path]) -> None:
    root, outside = box
    apply(
        root,
        [sym("etc", str(outside)), sym("passwd", str(outside / "passwd"))],
        [reg("passwd", b"replaced the link, not the target")],
    )
    assert os.readlink(root / "etc") == str(outside)
    assert (root / "passwd").read_text() == "replaced the link, not the target"
    outside_unchanged(root.parent)


def test_hardlink_to_symlink_links_the_symlink(box: tuple[Path, Path]) -> None:
    root, outside = box
    apply(root, [sym("s", str(outside / "passwd")), hard("h", "s")], [reg("h", b"new")])
    assert (root / "h").read_text() == "new"
    assert os.readlink(root / "s") == str(outside / "passwd")
    outside_unchanged(root.parent)
