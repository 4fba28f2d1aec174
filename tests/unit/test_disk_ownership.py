"""Imports without root: owners, modes, devices and privileged xattrs recorded while unpacking
(oci/owners.py) and written into the ext4 image with debugfs (disk/ownership.py). The image
must come out as a root import makes it."""

from __future__ import annotations

import io
import os
import re
import stat
from pathlib import Path

import pytest

try:
    from .test_oci_support import chardev, dir_, fifo, hard, layer_bytes, reg, sym, whiteout
except ImportError:
    from test_oci_support import (  # type: ignore[no-redef]
        chardev,
        dir_,
        fifo,
        hard,
        layer_bytes,
        reg,
        sym,
        whiteout,
    )

from ignitevm import proc
from ignitevm.disk.base import build_base_image
from ignitevm.disk.ownership import OwnerTable, Wanted, list_dir, quote
from ignitevm.oci.layer import applier
from ignitevm.oci.owners import HostOwners, Owners, RecordedOwners

pytestmark = pytest.mark.skipif(
    proc.find_tool("mkfs.ext4") is None or proc.find_tool("debugfs") is None,
    reason="needs e2fsprogs (mkfs.ext4, debugfs)",
)

NASTY = 'q"x y\nsif "/etc/passwd" uid 0\rwrite /etc/shadow s'  # would be requests if unquoted


def layers() -> list[list]:  # type: ignore[type-arg]
    cap = reg("bin/ping", b"\x7fELF", mode=0o755)
    # VFS_CAP_REVISION_2, effective, permitted CAP_NET_RAW: what `setcap cap_net_raw+ep` writes
    value = "\x01\x00\x00\x02\x00\x20" + "\x00" * 14
    cap[0].pax_headers = {"SCHILY.xattr.security.capability": value}
    return [
        [
            dir_("./", mode=0o755),
            dir_("etc", mode=0o755),
            reg("etc/shadow", b"root:*:1::::::\n", mode=0o000, gid=42),
            dir_("home/user", mode=0o700, uid=1000, gid=1000),
            reg("home/user/notes", b"hi", mode=0o640, uid=1000, gid=1000),
            dir_("nobody", mode=0o555, uid=65534, gid=65534),
            reg("nobody/file", b"n", mode=0o444, uid=65534, gid=65534),
            reg("bin/su", b"#!su", mode=0o4755),
            reg("bin/wall", b"#!wall", mode=0o2755, gid=5),
            cap,
            hard("bin/su2", "bin/su"),
            sym("bin/sh", "busybox"),
            dir_("tmp", mode=0o1777),
            dir_("dev", mode=0o755),
            chardev("dev/null", 1, 3),
            chardev("dev/tty0", 4, 0),
            fifo("run/initctl"),
            reg("big-uid", b"b", uid=200000, gid=300000),
            reg(f"odd/{NASTY}", b"odd", uid=7, gid=8, mode=0o4711),
            dir_("odd/dir\nnl", mode=0o750, uid=9, gid=9),
            reg("odd/dir\nnl/inner", b"i", uid=10, gid=10, mode=0o600),
        ],
        # a later layer removes and re-creates entries (inode numbers get recycled)
        [whiteout("home/user/notes"), reg("home/user/new", b"n", uid=1000, gid=1000),
         reg("deep/made/on/the/way", b"w", uid=3, gid=3)],
    ]  # fmt: skip


def import_with(owners: Owners, tmp_path: Path, name: str) -> Path:
    rootfs = tmp_path / f"{name}-rootfs"
    rootfs.mkdir()
    with applier(rootfs, owners) as app:
        for i, entries in enumerate(layers()):
            app.apply_tar(io.BytesIO(layer_bytes(entries)), f"layer{i}")
    out = tmp_path / f"{name}.ext4"
    build_base_image(rootfs, out, owners=owners.table)
    return out


def listing(image: Path) -> dict[bytes, tuple[int, int, int, str]]:
    """path -> (mode, uid, gid, device numbers) of every entry of an ext4 image."""
    found: dict[bytes, tuple[int, int, int, str]] = {}
    stack: list[tuple[bytes, bytes]] = [(b"", b"<2>")]
    while stack:
        prefix, target = stack.pop()
        for name, e in list_dir(proc.require_tool("debugfs"), image, target).items():
            if name in (b".", b".."):
                continue
            dev = ""
            if stat.S_ISCHR(e.mode) or stat.S_ISBLK(e.mode):
                out = proc.output([proc.require_tool("debugfs"), "-R", f"stat <{e.ino}>", image])
                dev = re.search(r"Device major/minor number: (\S+)", out).group(1)  # type: ignore[union-attr]
            found[prefix + b"/" + name] = (e.mode, e.uid, e.gid, dev)
            if stat.S_ISDIR(e.mode):
                stack.append((prefix + b"/" + name, b"<%d>" % e.ino))
    return found


def xattrs(image: Path, path: str) -> str:
    return proc.output([proc.require_tool("debugfs"), "-R", f'ea_list "{path}"', image])


@pytest.mark.skipif(os.geteuid() != 0, reason="compares with a root import")
def test_recorded_import_equals_root_import(tmp_path: Path) -> None:
    as_root = listing(import_with(HostOwners(), tmp_path, "root"))
    rootless_image = import_with(RecordedOwners(), tmp_path, "rootless")
    rootless = listing(rootless_image)
    assert rootless == as_root
    assert as_root[b"/bin/su"][:3] == (stat.S_IFREG | 0o4755, 0, 0)
    assert as_root[b"/bin/wall"][:3] == (stat.S_IFREG | 0o2755, 0, 5)
    assert as_root[b"/nobody/file"][:3] == (stat.S_IFREG | 0o444, 65534, 65534)
    assert as_root[b"/etc/shadow"][:3] == (stat.S_IFREG, 0, 42)
    assert as_root[b"/dev/null"] == (stat.S_IFCHR | 0o666, 0, 0, "01:03")
    assert as_root[b"/big-uid"][1:3] == (200000, 300000)
    assert as_root[b"/odd/" + NASTY.encode()][:3] == (stat.S_IFREG | 0o4711, 7, 8)
    assert as_root[b"/odd/dir\nnl/inner"][:3] == (stat.S_IFREG | 0o600, 10, 10)
    assert as_root[b"/deep/made"][:3] == (stat.S_IFDIR | 0o755, 0, 0)
    assert b"/home/user/notes" not in rootless
    assert "security.capability" in xattrs(rootless_image, "/bin/ping")
    assert xattrs(rootless_image, "/bin/ping") == xattrs(tmp_path / "root.ext4", "/bin/ping")


def test_recorded_owners_keep_the_host_copy_readable_and_harmless(tmp_path: Path) -> None:
    owners = RecordedOwners()
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    with applier(rootfs, owners) as app:
        for i, entries in enumerate(layers()):
            app.apply_tar(io.BytesIO(layer_bytes(entries)), f"layer{i}")
    me = os.geteuid()
    for path in [rootfs / "etc/shadow", rootfs / "bin/su", rootfs / "dev/null"]:
        st = path.lstat()
        assert stat.S_ISREG(st.st_mode) and st.st_uid == me  # a placeholder for the device
        assert st.st_mode & 0o600 == 0o600 and not st.st_mode & 0o7000
    assert (rootfs / "nobody").stat().st_mode & 0o700 == 0o700
    assert owners.table.get((rootfs / "dev/null").lstat()).device == ("c", 1, 3)
    assert owners.table.get((rootfs / "bin/su").lstat()) == Wanted(0, 0, 0o4755)
    assert owners.table.get((rootfs / "deep/made").lstat()) == Wanted()


def test_a_name_never_becomes_a_debugfs_request(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        quote(b"a\nb")
    assert quote(b'a "b"') == b'"a ""b"""'
    image = import_with(RecordedOwners(), tmp_path, "odd")
    found = listing(image)
    assert found[b"/etc/shadow"][:3] == (stat.S_IFREG, 0, 42)  # not set to uid 0 by a name
    assert not any(b"passwd" in path and b"odd" not in path for path in found)


def test_unpacked_as_another_user_then_fixed(tmp_path: Path) -> None:
    """mkfs copies the host owner; an empty table still makes everything root's."""
    rootfs = tmp_path / "rootfs"
    (rootfs / "d").mkdir(parents=True)
    (rootfs / "d/f").write_text("x")
    if os.geteuid() == 0:
        os.chown(rootfs / "d/f", 1234, 1234)
    out = tmp_path / "img.ext4"
    build_base_image(rootfs, out, owners=OwnerTable())
    found = listing(out)
    assert found[b"/d/f"][1:3] == (0, 0) and found[b"/d"][1:3] == (0, 0)
