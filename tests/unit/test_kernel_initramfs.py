"""Module resolution, the base initramfs and the per-VM layer, on synthetic modules."""

from __future__ import annotations

import lzma
import shutil
import stat
import struct
import subprocess
from pathlib import Path

import pytest

from ignitevm import proc
from ignitevm.errors import IgniteError, ValidationError
from ignitevm.kernel import (
    build_initramfs,
    build_modules_image,
    read_cpio,
    resolve_modules,
    write_vm_layer,
)
from ignitevm.kernel.modules import SIGNATURE_MAGIC, modinfo, strip_signature


def fake_module(name: str, depends: str = "") -> bytes:
    """A minimal ELF64 object with a .modinfo section, as the kernel build writes it."""
    info = f"license=GPL\0depends={depends}\0name={name}\0".encode()
    shstrtab = b"\0.modinfo\0.shstrtab\0"
    body = info + shstrtab
    shoff = 64 + len(body)
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x28, shoff)
    struct.pack_into("<HHH", header, 0x3A, 64, 3, 2)  # shentsize, shnum, shstrndx

    def section(name_off: int, typ: int, off: int, size: int) -> bytes:
        return struct.pack("<IIQQQQIIQQ", name_off, typ, 0, 0, off, size, 0, 0, 1, 0)

    sections = (
        section(0, 0, 0, 0)
        + section(1, 1, 64, len(info))
        + section(10, 3, 64 + len(info), len(shstrtab))
    )
    return bytes(header) + body + sections


DEPS = {
    "virtio_ring": "",
    "virtio": "",
    "virtio_mmio": "virtio,virtio_ring",
    "virtio_blk": "virtio,virtio_ring",
    "virtio_net": "net_failover,virtio,virtio_ring",
    "net_failover": "failover",
    "failover": "",
    "crc32c_generic": "",
    "crc16": "",
    "jbd2": "",
    "mbcache": "",
    "ext4": "crc16,jbd2,mbcache",
    "overlay": "",
    "evdev": "",
    "unrelated": "",
    "netfs": "",
    "fscache": "netfs",
    "9pnet": "",
    "9pnet_virtio": "9pnet,virtio,virtio_ring",
    "9p": "9pnet,fscache,netfs",
}
SHARE = {"netfs", "fscache", "9pnet", "9pnet_virtio", "9p"}


@pytest.fixture
def modules_dir(tmp_path: Path) -> Path:
    root = tmp_path / "lib/modules/6.1.0-99-test"
    for name, deps in DEPS.items():
        path = root / "kernel" / f"{name}.ko"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(fake_module(name, deps))
    # Compressed modules are read too; the button module is an optional extra.
    (root / "kernel/button.ko.xz").write_bytes(lzma.compress(fake_module("button")))
    (root / "modules.builtin").write_text("kernel/lib/libcrc32c.ko\n")
    return root


def test_modinfo_reads_depends() -> None:
    assert modinfo(fake_module("ext4", "jbd2,mbcache"))["depends"] == "jbd2,mbcache"


def test_modules_resolved_in_dependency_order(modules_dir: Path) -> None:
    names = [m.name for m in resolve_modules(modules_dir)]
    assert "unrelated" not in names
    assert set(names) == set(DEPS) - {"unrelated"} - SHARE | {"button"}
    for name, deps in DEPS.items():
        for dep in filter(None, deps.split(",")):
            if name in names:
                assert names.index(dep) < names.index(name), (dep, name)


def test_share_modules_are_a_second_list_loaded_on_demand(
    modules_dir: Path, tmp_path: Path
) -> None:
    """9p is for VMs with --share only: /etc/ignitevm/modules.9p, without the base modules."""
    if shutil.which("busybox") is None:
        pytest.skip("busybox-static not installed")
    out = tmp_path / "initrd.cpio"
    build_initramfs(out, modules_dir=modules_dir, version="6.1.0-99-test")
    entries = {e.name: e for e in read_cpio(out.read_bytes())}
    base = entries["etc/ignitevm/modules"].data.decode().split()
    share = entries["etc/ignitevm/modules.9p"].data.decode().split()
    assert not SHARE & {n.removesuffix(".ko") for n in base}
    assert share.index("9pnet.ko") < share.index("9pnet_virtio.ko") < share.index("9p.ko")
    assert share.index("netfs.ko") < share.index("fscache.ko") < share.index("9p.ko")
    assert set(share) == {f"{n}.ko" for n in SHARE}
    assert all(f"lib/modules/{n}" in entries for n in share)


def test_modules_dep_wins_when_present(modules_dir: Path) -> None:
    (modules_dir / "modules.dep").write_text("kernel/ext4.ko: kernel/jbd2.ko\nkernel/jbd2.ko:\n")
    names = [m.name for m in resolve_modules(modules_dir)]
    assert names.index("jbd2") < names.index("ext4")


def signed(module: bytes, sig: bytes = b"\x30\x82PKCS7-blob") -> bytes:
    """``module`` as scripts/sign-file leaves it: blob, struct module_signature, magic."""
    info = bytes([0, 0, 2, 0, 0, 0, 0, 0]) + len(sig).to_bytes(4, "big")
    return module + sig + info + SIGNATURE_MAGIC


def test_strip_signature() -> None:
    module = fake_module("ext4")
    assert strip_signature(signed(module)) == module
    assert strip_signature(module) == module  # unsigned: unchanged
    broken = module + (10**6).to_bytes(12, "big") + SIGNATURE_MAGIC  # length beyond the file
    assert strip_signature(broken) == broken


def test_initramfs_modules_are_unsigned_copies(modules_dir: Path, tmp_path: Path) -> None:
    if shutil.which("busybox") is None:
        pytest.skip("busybox-static not installed")
    ext4 = modules_dir / "kernel/ext4.ko"
    plain = ext4.read_bytes()
    ext4.write_bytes(signed(plain))
    out = tmp_path / "initrd.cpio"
    build_initramfs(out, modules_dir=modules_dir, version="6.1.0-99-test")
    entries = {e.name: e for e in read_cpio(out.read_bytes())}
    assert entries["lib/modules/ext4.ko"].data == plain


def test_missing_dependency_is_an_error(modules_dir: Path) -> None:
    (modules_dir / "kernel/jbd2.ko").unlink()
    with pytest.raises(IgniteError, match="jbd2"):
        resolve_modules(modules_dir)


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static not installed")
def test_initramfs_has_init_busybox_and_ordered_modules(modules_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "initrd.cpio"
    build_initramfs(out, modules_dir=modules_dir, version="6.1.0-99-test")
    entries = {e.name: e for e in read_cpio(out.read_bytes())}
    assert stat.S_IMODE(entries["init"].mode) == 0o755
    assert entries["init"].data.startswith(b"#!/bin/busybox sh")
    assert entries["bin/busybox"].data[:4] == b"\x7fELF"
    assert entries["sbin/switch_root"].is_symlink
    assert stat.S_ISCHR(entries["dev/console"].mode)
    order = entries["etc/ignitevm/modules"].data.decode().split()
    assert order[-1] in ("button.ko", "evdev.ko") and "unrelated.ko" not in order
    assert order.index("jbd2.ko") < order.index("ext4.ko")
    assert entries["lib/modules/button.ko"].data[:4] == b"\x7fELF"  # decompressed
    if shutil.which("resize2fs"):
        assert "sbin/resize2fs" in entries
        assert any(name.startswith("lib") and "libext2fs" in name for name in entries)


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static not installed")
def test_built_in_kernel_gets_no_modules(tmp_path: Path) -> None:
    out = tmp_path / "initrd.cpio"
    build_initramfs(out, modules_dir=None, version="6.1.0-builtin")
    entries = {e.name: e for e in read_cpio(out.read_bytes())}
    assert entries["etc/ignitevm/modules"].data == b""
    assert not [n for n in entries if n.startswith("lib/modules/")]


def test_vm_layer_files_firstboot_env_and_modes(tmp_path: Path) -> None:
    key = tmp_path / "id.pub"
    key.write_text("ssh-ed25519 AAAA test\n")
    key.chmod(0o640)
    out = tmp_path / "vm.cpio"
    write_vm_layer(
        out,
        files={"/root/.ssh/authorized_keys": key, "/etc/hostname": b"web\n"},
        firstboot={"/etc/motd": b"hello\n", "/opt/run.sh": b"#!/bin/sh\n"},
        env={"IGNITE_IP": "10.0.0.2::10.0.0.1:255.255.255.0:web:eth0:off", "X": "it's"},
        modes={"/root/.ssh/authorized_keys": 0o600, "/opt/run.sh": 0o755},
    )
    entries = {e.name: e for e in read_cpio(out.read_bytes())}
    auth = entries["ignite/files/root/.ssh/authorized_keys"]
    assert auth.data == b"ssh-ed25519 AAAA test\n" and stat.S_IMODE(auth.mode) == 0o600
    assert stat.S_IMODE(entries["ignite/files/root/.ssh"].mode) == 0o700
    assert stat.S_IMODE(entries["ignite/files/etc/hostname"].mode) == 0o644
    assert entries["ignite/firstboot/etc/motd"].data == b"hello\n"
    assert stat.S_IMODE(entries["ignite/firstboot/opt/run.sh"].mode) == 0o755
    env = entries["ignite/env"].data.decode()
    assert "IGNITE_IP=10.0.0.2::10.0.0.1:255.255.255.0:web:eth0:off\n" in env
    assert "X='it'\"'\"'s'\n" in env


@pytest.mark.parametrize("dest", ["etc/relative", "/etc/../../escape"])
def test_vm_layer_refuses_bad_destinations(dest: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        write_vm_layer(tmp_path / "vm.cpio", files={dest: b"x"})


def test_vm_layer_refuses_bad_env_names(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        write_vm_layer(tmp_path / "vm.cpio", files={}, env={"A B": "x"})


@pytest.mark.skipif(shutil.which("debugfs") is None, reason="e2fsprogs not installed")
@pytest.mark.parametrize("with_depmod", [False, True])
def test_modules_image_has_the_tree_and_modules_dep(
    modules_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_depmod: bool
) -> None:
    real_find = proc.find_tool
    if with_depmod:
        if real_find("depmod") is None:
            pytest.skip("kmod not installed")
    else:
        monkeypatch.setattr(proc, "find_tool", lambda n: None if n == "depmod" else real_find(n))
    out = tmp_path / "modules.ext4"
    build_modules_image(modules_dir, out, version="6.1.0-99-test")

    def cat(path: str) -> bytes:
        argv = ["debugfs", "-R", f"cat {path}", str(out)]
        return subprocess.run(argv, capture_output=True, check=True).stdout

    assert cat("/kernel/ext4.ko").startswith(b"\x7fELF")
    text = cat("/modules.dep").decode()
    dep = {line.split(":")[0]: line.split(":")[1].split() for line in text.splitlines()}
    assert "kernel/button.ko.xz" in dep
    if with_depmod:  # depmod resolves symbols (our fakes have none) and writes modprobe's .bin
        assert cat("/modules.dep.bin")
    else:
        assert set(dep["kernel/ext4.ko"]) == {
            "kernel/crc16.ko", "kernel/jbd2.ko", "kernel/mbcache.ko",
        }  # fmt: skip
        assert set(dep["kernel/virtio_net.ko"]) >= {"kernel/net_failover.ko", "kernel/failover.ko"}
    label = subprocess.run(["e2label", str(out)], capture_output=True, text=True, check=True)
    assert label.stdout.strip() == "ignite-modules"
    assert not (modules_dir / "modules.dep").exists()  # the source tree is left alone
