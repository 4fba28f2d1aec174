"""``ignite-reseed``: a 200-byte static x86-64 program for the guest agent that asks the kernel to
reseed its random generator now (``ioctl(open("/dev/urandom"), RNDRESEEDCRNG)``).

Two VMs restored from one snapshot start with the same generator state; the agent mixes a seed
from the host into the pool and runs this, so their random bytes part at once. busybox has no
ioctl applet, QEMU's ``vmgenid`` (which makes Linux reseed by itself) is not wired into the
``microvm`` machine's ACPI tables, and the guest image may have no tools at all; so the program
is assembled here, byte by byte: nothing to compile, nothing to trust but these bytes.
"""

from __future__ import annotations

import struct

BASE = 0x400000
RNDRESEEDCRNG = 0x5207  # _IO('R', 0x07)
_PATH = b"/dev/urandom\0"


def _code(path_offset: int) -> bytes:
    """Machine code; ``path_offset`` is where the path lies relative to the code's start."""
    code = bytearray()
    code += b"\xb8\x02\x00\x00\x00"  # mov eax, 2 (open)
    lea_at = len(code)
    code += b"\x48\x8d\x3d\x00\x00\x00\x00"  # lea rdi, [rip + path]
    code += b"\xbe\x01\x00\x00\x00"  # mov esi, 1 (O_WRONLY)
    code += b"\x0f\x05"  # syscall
    code += b"\x89\xc7"  # mov edi, eax (the fd)
    code += b"\xb8\x10\x00\x00\x00"  # mov eax, 16 (ioctl)
    code += b"\xbe" + struct.pack("<I", RNDRESEEDCRNG)  # mov esi, RNDRESEEDCRNG
    code += b"\x0f\x05"  # syscall
    code += b"\x89\xc7"  # mov edi, eax (0, or -errno)
    code += b"\xf7\xdf"  # neg edi: the exit code is the errno
    code += b"\xb8\x3c\x00\x00\x00"  # mov eax, 60 (exit)
    code += b"\x0f\x05"  # syscall
    rip = lea_at + 7  # the instruction after the lea
    struct.pack_into("<i", code, lea_at + 3, path_offset - rip)
    return bytes(code)


def reseed_program() -> bytes:
    """The whole ELF file: header, one loadable segment, code, the path."""
    ehdr_size, phdr_size = 64, 56
    start = ehdr_size + phdr_size
    code_len = len(_code(0))
    code = _code(code_len)  # the path right after the code
    body = code + _PATH
    size = start + len(body)
    ehdr = struct.pack(
        "<4sBBBBB7xHHIQQQIHHHHHH",
        b"\x7fELF", 2, 1, 1, 0, 0,  # 64-bit, little endian, version 1, System V ABI
        2, 0x3E, 1,  # ET_EXEC, x86-64, version
        BASE + start,  # entry
        ehdr_size,  # program headers
        0,  # no section headers
        0, ehdr_size, phdr_size, 1, 0, 0, 0,
    )  # fmt: skip
    phdr = struct.pack(
        "<IIQQQQQQ",
        1, 5,  # PT_LOAD, readable + executable
        0, BASE, BASE,  # the whole file at BASE
        size, size, 0x1000,
    )  # fmt: skip
    return ehdr + phdr + body
