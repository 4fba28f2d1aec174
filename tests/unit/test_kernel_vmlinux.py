"""to_vmlinux and detect_version on synthetic kernels: an ELF inside bzImage-like blobs."""

from __future__ import annotations

import bz2
import gzip
import lzma
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from ignitevm.errors import IgniteError
from ignitevm.kernel import detect_version, to_vmlinux

ELF = (
    b"\x7fELF\x02\x01\x01" + b"\0" * 57
    + b"padding " * 64
    + b"Linux version 6.1.0-99-test (builder@example) (gcc 12) #1 SMP\0"
    + bytes(range(256)) * 8
)  # fmt: skip


def _tool(argv: list[str]) -> Callable[[bytes], bytes]:
    def compress(data: bytes) -> bytes:
        if shutil.which(argv[0]) is None:
            pytest.skip(f"{argv[0]} not installed")
        return subprocess.run(argv, input=data, capture_output=True, check=True).stdout

    return compress


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda d: gzip.compress(d, mtime=0),
    "xz": lambda d: lzma.compress(d, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32),
    "lzma": lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE),
    "bzip2": bz2.compress,
    "zstd": lambda d: zstandard.ZstdCompressor(write_content_size=False).compress(d),
    "lz4": _tool(["lz4", "-l", "-9", "-c"]),  # the legacy frame format the kernel uses
    "lzo": _tool(["lzop", "-9", "-c"]),
}


def bzimage(payload: bytes, *, header: bool = True) -> bytes:
    """A blob shaped like an x86 bzImage: setup sectors, boot header, then the payload + size."""
    setup_sects = 4
    blob = bytearray(b"\x90" * ((setup_sects + 1) * 512))
    if header:
        blob[0x1F1] = setup_sects
        blob[0x1FE:0x200] = b"\x55\xaa"
        blob[0x202:0x206] = b"HdrS"
        struct.pack_into("<H", blob, 0x206, 0x20F)
        version = b"6.1.0-99-test (builder@example) #1 SMP\0"
        blob[0x300 : 0x300 + len(version)] = version
        struct.pack_into("<H", blob, 0x20E, 0x300 - 0x200)
        decompressor_stub = b"\xcc" * 100
        struct.pack_into("<II", blob, 0x248, len(decompressor_stub), len(payload))
        blob += decompressor_stub
    else:
        blob += b"\x00garbage\x1f\x8b"  # a false gzip magic before the real payload
    return bytes(blob) + payload + struct.pack("<I", len(ELF)) + b"\0" * 64


@pytest.mark.parametrize("method", sorted(COMPRESSORS))
def test_compressed_payload_becomes_the_elf(method: str, tmp_path: Path) -> None:
    image = tmp_path / "vmlinuz"
    image.write_bytes(bzimage(COMPRESSORS[method](ELF)))
    to_vmlinux(image, tmp_path / "vmlinux")
    assert (tmp_path / "vmlinux").read_bytes() == ELF


@pytest.mark.parametrize("method", ["gzip", "xz", "zstd"])
def test_payload_found_by_scanning_without_boot_header(method: str, tmp_path: Path) -> None:
    image = tmp_path / "vmlinuz"
    image.write_bytes(bzimage(COMPRESSORS[method](ELF), header=False))
    to_vmlinux(image, tmp_path / "vmlinux")
    assert (tmp_path / "vmlinux").read_bytes() == ELF


def test_elf_is_copied(tmp_path: Path) -> None:
    (tmp_path / "in").write_bytes(ELF)
    to_vmlinux(tmp_path / "in", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == ELF


def test_not_a_kernel_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "junk").write_bytes(b"#!/bin/sh\necho hi\n" * 100 + gzip.compress(b"not elf"))
    with pytest.raises(IgniteError, match="not a Linux kernel") as info:
        to_vmlinux(tmp_path / "junk", tmp_path / "out")
    assert info.value.hint
    assert not (tmp_path / "out").exists()


def test_version_from_banner_header_or_modules_dir(tmp_path: Path) -> None:
    (tmp_path / "vmlinux").write_bytes(ELF)
    assert detect_version(tmp_path / "vmlinux") == "6.1.0-99-test"
    (tmp_path / "vmlinuz").write_bytes(bzimage(gzip.compress(ELF)))
    assert detect_version(tmp_path / "vmlinuz") == "6.1.0-99-test"
    (tmp_path / "bare").write_bytes(b"\x7fELF" + b"\0" * 100)
    modules = tmp_path / "lib/modules/6.6.6-custom"
    assert detect_version(tmp_path / "bare", modules) == "6.6.6-custom"
    with pytest.raises(IgniteError, match="cannot detect"):
        detect_version(tmp_path / "bare")
