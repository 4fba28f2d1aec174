"""Debian's real kernel package: extraction, ELF vmlinux, version, initramfs from its modules."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ignitevm.kernel import (
    FoundKernel,
    build_initramfs,
    extract_deb,
    find_kernel_in_rootfs,
    read_cpio,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DEB_CACHE = ROOT / "_out" / "cache" / "debs"


def kernel_deb() -> Path:
    """Debian's current kernel package, downloaded once into _out/cache (reused between runs)."""
    if shutil.which("apt-get") is None:
        pytest.skip("needs apt-get (Debian)")
    out = subprocess.run(
        [sys.executable, "-m", "ignitevm.kernel.apt", str(DEB_CACHE)],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    return Path(out.stdout.strip())


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, FoundKernel]]:
    deb = kernel_deb()
    work = tmp_path_factory.mktemp("deb")
    try:
        yield deb, extract_deb(deb, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_deb_gives_elf_vmlinux_version_and_modules(kernel: tuple[Path, FoundKernel]) -> None:
    deb, files = kernel
    head = files.vmlinux.read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and head[4] == 2  # 64-bit ELF, not the bzImage
    assert files.vmlinux.stat().st_size > 20 << 20
    # linux-image-6.1.0-NN-amd64_6.1.x_amd64.deb carries version 6.1.0-NN-amd64
    assert deb.name.startswith(f"linux-image-{files.version}_")
    assert files.modules_dir is not None and files.modules_dir.name == files.version
    # Debian 12 ships its modules uncompressed (docs/kernel.md); depmod's files are not shipped.
    assert (files.modules_dir / "kernel/fs/ext4/ext4.ko").is_file()
    assert not (files.modules_dir / "modules.dep").exists()


def test_initramfs_from_debian_modules(kernel: tuple[Path, FoundKernel], tmp_path: Path) -> None:
    _, files = kernel
    out = tmp_path / "initrd.cpio"
    build_initramfs(out, modules_dir=files.modules_dir, version=files.version)
    entries = {e.name: e for e in read_cpio(out.read_bytes())}
    order = entries["etc/ignitevm/modules"].data.decode().split()
    for needed in ("virtio_mmio.ko", "virtio_blk.ko", "virtio_net.ko", "ext4.ko",
                   "crc32c_generic.ko", "overlay.ko", "button.ko", "evdev.ko"):  # fmt: skip
        assert needed in order
        assert entries[f"lib/modules/{needed}"].data[:4] == b"\x7fELF"
    for dep, user in (("virtio.ko", "virtio_mmio.ko"), ("jbd2.ko", "ext4.ko"),
                      ("mbcache.ko", "ext4.ko"), ("failover.ko", "virtio_net.ko")):  # fmt: skip
        assert order.index(dep) < order.index(user)
    assert len(order) < 25  # exactly what the VM needs, not the whole tree
    assert stat.S_IMODE(entries["init"].mode) == 0o755
    assert out.stat().st_size < 16 << 20
    if shutil.which("cpio"):  # GNU cpio agrees with our reader
        listing = (
            subprocess.run(
                ["cpio", "-it", "--quiet"], input=out.read_bytes(), capture_output=True, check=True
            )
            .stdout.decode()
            .split()
        )
        assert "lib/modules/ext4.ko" in listing and "init" in listing


def test_oci_kernel_image_layout(kernel: tuple[Path, FoundKernel], tmp_path: Path) -> None:
    """Ignite's kernel images: /boot/vmlinux (here a symlink to the bzImage) + /lib/modules."""
    _, files = kernel
    assert files.modules_dir is not None
    rootfs = tmp_path / "rootfs"
    (rootfs / "boot").mkdir(parents=True)
    src_boot = files.modules_dir.parents[2] / "boot"
    vmlinuz = next(src_boot.glob("vmlinuz-*"))
    shutil.copy(vmlinuz, rootfs / "boot" / vmlinuz.name)
    os.symlink(f"/boot/{vmlinuz.name}", rootfs / "boot/vmlinux")  # absolute: resolved in rootfs
    modules = rootfs / "lib/modules" / files.version
    modules.mkdir(parents=True)
    shutil.copy(files.modules_dir / "modules.order", modules)
    found = find_kernel_in_rootfs(rootfs, tmp_path / "work")
    assert found.version == files.version
    assert found.vmlinux.read_bytes()[:4] == b"\x7fELF"
    assert found.modules_dir is not None and found.modules_dir.name == files.version


def test_extract_deb_without_dpkg(
    kernel: tuple[Path, FoundKernel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pure-Python path (ar + data.tar.xz) gives the same kernel as dpkg-deb."""
    from ignitevm import proc

    deb, files = kernel
    real_find = proc.find_tool
    monkeypatch.setattr(proc, "find_tool", lambda n: None if n == "dpkg-deb" else real_find(n))
    found = extract_deb(deb, tmp_path / "py")
    assert found.version == files.version
    assert found.vmlinux.read_bytes() == files.vmlinux.read_bytes()
    assert found.modules_dir is not None and files.modules_dir is not None
    ext4 = "kernel/fs/ext4/ext4.ko"
    assert (found.modules_dir / ext4).read_bytes() == (files.modules_dir / ext4).read_bytes()
