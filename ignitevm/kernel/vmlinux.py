"""Turn a kernel image (ELF vmlinux or bzImage) into the uncompressed ELF QEMU boots via PVH.

Decompressing Debian's XZ bzImage costs ~5 s under TCG at every boot; doing it once here is the
single biggest boot-time saving (docs/kernel.md).
"""

from __future__ import annotations

import bz2
import logging
import lzma
import os
import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

from ignitevm import proc
from ignitevm.errors import IgniteError

log = logging.getLogger(__name__)

ELF_MAGIC = b"\x7fELF"
_BANNER = re.compile(rb"Linux version (\d+\.\d+[^\s\x00]*)")

# Magic numbers as the kernel's compressors write them (scripts/extract-vmlinux uses the same).
_MAGICS: dict[str, bytes] = {
    "gzip": b"\x1f\x8b\x08",
    "xz": b"\xfd7zXZ\x00",
    "zstd": b"\x28\xb5\x2f\xfd",
    "bzip2": b"BZh",
    "lzma": b"\x5d\x00\x00",
    "lz4": b"\x02\x21\x4c\x18",
    "lzo": b"\x89LZO",
}
_MAX_CANDIDATES = 8  # per method, when scanning a blob without a usable setup header


def _gunzip(data: bytes) -> bytes:
    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)


def _unxz(data: bytes) -> bytes:
    return lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(data)


def _unlzma(data: bytes) -> bytes:
    return lzma.LZMADecompressor(lzma.FORMAT_ALONE).decompress(data)


def _bunzip2(data: bytes) -> bytes:
    return bz2.BZ2Decompressor().decompress(data)


def _unzstd(data: bytes) -> bytes:
    import zstandard  # lazy: only kernel imports need it

    # The kernel's frame may lack a content size, and the size the kernel appends follows it:
    # a decompressobj handles both (it stops at the end of the first frame).
    out: bytes = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return out


def _tool(argv: list[str]) -> Callable[[bytes], bytes]:
    # lz4 (legacy frames) and lzop have no module in the standard library; their tools ship in
    # Debian. Trailing bytes (the kernel appends the size) make them exit non-zero after the data.
    def run(data: bytes) -> bytes:
        proc.require_tool(argv[0])
        return proc.run(argv, input=data, check=False).stdout

    return run


_DECOMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": _gunzip,
    "xz": _unxz,
    "zstd": _unzstd,
    "bzip2": _bunzip2,
    "lzma": _unlzma,
    "lz4": _tool(["lz4", "-dc"]),
    "lzo": _tool(["lzop", "-dc"]),
}


def _try(method: str, data: bytes) -> bytes | None:
    try:
        out = _DECOMPRESSORS[method](data)
    except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error, IgniteError) as exc:
        log.debug("%s candidate failed: %s", method, exc)
        return None
    except Exception as exc:  # zstandard.ZstdError has no common base we can import eagerly
        log.debug("%s candidate failed: %s", method, exc)
        return None
    return out if out.startswith(ELF_MAGIC) else None


def _bzimage_payload(blob: bytes) -> bytes | None:
    """The compressed payload located by the x86 boot protocol header (2.08+), or None."""
    if len(blob) < 0x250 or blob[0x202:0x206] != b"HdrS":
        return None
    version = struct.unpack_from("<H", blob, 0x206)[0]
    if version < 0x208:
        return None
    setup_sects = blob[0x1F1] or 4
    offset, length = struct.unpack_from("<II", blob, 0x248)
    start = (setup_sects + 1) * 512 + offset
    if length == 0 or start + length > len(blob):
        return None
    return blob[start : start + length]


def decompress_kernel(blob: bytes) -> bytes:
    """Return the ELF inside ``blob`` (itself if already ELF); IgniteError if there is none."""
    if blob.startswith(ELF_MAGIC):
        return blob
    payload = _bzimage_payload(blob)
    if payload is not None:
        for method, magic in _MAGICS.items():
            if payload.startswith(magic) and (elf := _try(method, payload)) is not None:
                log.debug("bzImage payload: %s", method)
                return elf
    # No usable header (or an odd payload): scan for every known magic, as extract-vmlinux does.
    for method, magic in _MAGICS.items():
        pos = blob.find(magic)
        tries = 0
        while pos >= 0 and tries < _MAX_CANDIDATES:
            if (elf := _try(method, blob[pos:])) is not None:
                log.debug("found %s payload at offset %d", method, pos)
                return elf
            tries += 1
            pos = blob.find(magic, pos + 1)
    raise IgniteError(
        "not a Linux kernel: no ELF image and no compressed ELF payload found",
        hint="pass a vmlinux, a bzImage (vmlinuz-*) or a Debian linux-image-*.deb",
    )


def to_vmlinux(image: Path, out: Path) -> None:
    """Write the uncompressed ELF kernel of ``image`` to ``out`` (atomically)."""
    try:
        blob = image.read_bytes()
    except OSError as exc:
        raise IgniteError(f"cannot read kernel {image}: {exc.strerror}") from exc
    try:
        elf = decompress_kernel(blob)
    except IgniteError as exc:
        raise IgniteError(f"{image}: {exc.message}", hint=exc.hint) from exc
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(elf)
    os.replace(tmp, out)


def find_version(blob: bytes) -> str | None:
    """The version from the ``Linux version X`` banner, or from a bzImage's kernel_version field."""
    if (m := _BANNER.search(blob)) is not None:
        return m.group(1).decode(errors="replace")
    if len(blob) > 0x210 and blob[0x202:0x206] == b"HdrS":
        ptr = struct.unpack_from("<H", blob, 0x20E)[0]
        if ptr:
            raw = blob[ptr + 0x200 : ptr + 0x200 + 256].split(b"\0", 1)[0]
            if raw and raw[:1].isdigit():
                return raw.split()[0].decode(errors="replace")
    return None


def detect_version(kernel: Path, modules_dir: Path | None = None) -> str:
    """The kernel's version (e.g. ``6.1.0-28-amd64``), else the name of ``modules_dir``."""
    version = find_version(kernel.read_bytes())
    if version is None and modules_dir is not None:
        version = modules_dir.name
    if version is None:
        raise IgniteError(
            f"cannot detect the version of kernel {kernel}",
            hint="pass its modules directory (lib/modules/<version>) or name the version",
        )
    return version
