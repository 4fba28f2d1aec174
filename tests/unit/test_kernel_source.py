"""Kernel sources on synthetic inputs: OCI kernel image layouts and .deb packages."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from ignitevm import proc
from ignitevm.errors import IgniteError, NotFoundError
from ignitevm.kernel import extract_deb, find_kernel_in_rootfs

ELF = b"\x7fELF\x02\x01\x01" + b"\0" * 57 + b"Linux version 6.1.0-99-test (x) #1\0" + b"k" * 4096


def _rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "boot").mkdir(parents=True)
    (root / "boot/vmlinuz-6.1.0-99-test").write_bytes(gzip.compress(ELF, mtime=0))
    (root / "boot/vmlinuz-5.10.0-1-old").write_bytes(gzip.compress(ELF, mtime=0))
    (root / "lib/modules/6.1.0-99-test/kernel").mkdir(parents=True)
    (root / "lib/modules/5.10.0-1-old").mkdir(parents=True)
    return root


def test_highest_vmlinuz_and_matching_modules(tmp_path: Path) -> None:
    files = find_kernel_in_rootfs(_rootfs(tmp_path), tmp_path / "work")
    assert files.vmlinux == tmp_path / "work/vmlinux"
    assert files.vmlinux.read_bytes() == ELF
    assert files.version == "6.1.0-99-test"
    assert files.modules_dir == tmp_path / "rootfs/lib/modules/6.1.0-99-test"


def test_boot_vmlinux_symlinks_resolve_inside_the_rootfs(tmp_path: Path) -> None:
    root = _rootfs(tmp_path)
    # An absolute link means /boot/... of the image, never the host's.
    os.symlink("/boot/vmlinuz-6.1.0-99-test", root / "boot/vmlinux")
    assert find_kernel_in_rootfs(root, tmp_path / "work").vmlinux.read_bytes() == ELF
    (root / "boot/vmlinux").unlink()
    for p in (root / "boot").iterdir():
        p.unlink()
    os.symlink("/../../../../../../etc/hostname", root / "boot/vmlinux")
    with pytest.raises(NotFoundError, match="no kernel"):
        find_kernel_in_rootfs(root, tmp_path / "work")


def test_no_kernel_is_not_found(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundError) as info:
        find_kernel_in_rootfs(tmp_path / "empty", tmp_path / "work")
    assert info.value.hint


def _deb(path: Path, members: dict[str, bytes]) -> None:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    parts = [("debian-binary", b"2.0\n"), ("control.tar.xz", b""), ("data.tar.xz", data.getvalue())]
    with path.open("wb") as fh:
        fh.write(b"!<arch>\n")
        for name, content in parts:
            header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(content):<10}`\n"
            fh.write(header.encode() + content + (b"\n" if len(content) % 2 else b""))


def test_deb_extracted_in_python_when_dpkg_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find = proc.find_tool
    monkeypatch.setattr(proc, "find_tool", lambda n: None if n == "dpkg-deb" else real_find(n))
    deb = tmp_path / "linux-image-6.1.0-99-test_1_amd64.deb"
    _deb(deb, {
        "./boot/vmlinuz-6.1.0-99-test": gzip.compress(ELF, mtime=0),
        "./boot/System.map-6.1.0-99-test": b"unused",
        "./lib/modules/6.1.0-99-test/kernel/fs/ext4/ext4.ko": b"\x7fELF-module",
        "./usr/share/doc/linux-image/changelog": b"unused",
        "../escape": b"never written",
    })  # fmt: skip
    files = extract_deb(deb, tmp_path / "work")
    assert files.version == "6.1.0-99-test"
    assert files.vmlinux.read_bytes() == ELF
    assert files.modules_dir is not None
    assert (files.modules_dir / "kernel/fs/ext4/ext4.ko").read_bytes() == b"\x7fELF-module"
    assert not (tmp_path / "work/rootfs/usr").exists()
    assert not (tmp_path / "escape").exists()


def test_not_a_deb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proc, "find_tool", lambda n: None)
    bogus = tmp_path / "bogus.deb"
    bogus.write_bytes(b"PK\x03\x04 zip, not ar")
    with pytest.raises(IgniteError, match="not a Debian package"):
        extract_deb(bogus, tmp_path / "work")
    with pytest.raises(NotFoundError):
        extract_deb(tmp_path / "missing.deb", tmp_path / "work")


def test_deb_member_escaping_the_root_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(proc, "find_tool", lambda n: None)
    deb = tmp_path / "evil.deb"
    _deb(deb, {"./lib/modules/../../../../escape": b"x"})
    with pytest.raises(IgniteError, match="cannot unpack"):
        extract_deb(deb, tmp_path / "work")
    assert not (tmp_path / "escape").exists()
