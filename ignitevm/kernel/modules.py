"""Pick the kernel modules a VM needs and order them for insmod.

Debian's package ships no ``modules.dep`` (depmod writes it at install time), so dependencies come
from ``modules.dep`` when present, else from each module's ``.modinfo`` ``depends=`` field.
"""

from __future__ import annotations

import gzip
import logging
import lzma
import struct
from dataclasses import dataclass
from pathlib import Path

from ignitevm.errors import IgniteError

log = logging.getLogger(__name__)

# What /init needs, in the order it should load them. ext4 looks its crc32c up by name at mount
# time (no symbol dependency), so crc32c_generic is named explicitly.
REQUIRED_MODULES = ("virtio_mmio", "virtio_blk", "virtio_net", "crc32c_generic", "ext4", "overlay")
# virtio_console: the guest agent's port (docs/internals.md "The guest agent")
OPTIONAL_MODULES = ("button", "evdev", "virtio_console")
# Host directories (--share): 9p over virtio. In the initramfs, but loaded only by a VM that
# has shares (/etc/ignitevm/modules.9p); optional: a kernel without them boots, and /init says
# why a share cannot be mounted.
SHARE_MODULES = ("9pnet_virtio", "9p")
_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")


@dataclass(frozen=True)
class Module:
    name: str  # normalized: dashes become underscores, as the kernel names modules
    path: Path


def module_name(path: Path | str) -> str:
    base = Path(path).name
    for suffix in _SUFFIXES:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base.replace("-", "_")


def read_module(path: Path) -> bytes:
    """The uncompressed ELF of a module file (.ko, .ko.xz, .ko.zst, .ko.gz)."""
    data = path.read_bytes()
    name = path.name
    if name.endswith(".xz"):
        return lzma.decompress(data)
    if name.endswith(".gz"):
        return gzip.decompress(data)
    if name.endswith(".zst"):
        import zstandard  # lazy

        out: bytes = zstandard.ZstdDecompressor().decompressobj().decompress(data)
        return out
    return data


SIGNATURE_MAGIC = b"~Module signature appended~\n"


def strip_signature(ko: bytes) -> bytes:
    """The module without its appended signature (``scripts/sign-file``'s layout: the PKCS#7
    blob, ``struct module_signature`` whose last 4 bytes are the blob's big-endian length, the
    magic). Unchanged when it carries none or the trailer does not add up."""
    if not ko.endswith(SIGNATURE_MAGIC):
        return ko
    info_end = len(ko) - len(SIGNATURE_MAGIC)
    sig_len = int.from_bytes(ko[info_end - 4 : info_end], "big")
    end = info_end - 12 - sig_len
    return ko[:end] if end > 0 else ko


def modinfo(elf: bytes) -> dict[str, str]:
    """The ``.modinfo`` section of a 64-bit little-endian module as a dict (last value wins)."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise IgniteError("not a 64-bit little-endian ELF kernel module")
    shoff = struct.unpack_from("<Q", elf, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        name, _typ, _flags, _addr, off, size = struct.unpack_from(
            "<IIQQQQ", elf, shoff + i * shentsize
        )
        return name, off, size

    _, stroff, _ = section(shstrndx)
    for i in range(shnum):
        name_off, off, size = section(i)
        end = elf.index(b"\0", stroff + name_off)
        if elf[stroff + name_off : end] == b".modinfo":
            info: dict[str, str] = {}
            for item in elf[off : off + size].split(b"\0"):
                key, sep, value = item.partition(b"=")
                if sep:
                    info[key.decode()] = value.decode(errors="replace")
            return info
    return {}


def index_modules(modules_dir: Path) -> dict[str, Module]:
    index: dict[str, Module] = {}
    for path in sorted(modules_dir.rglob("*.ko*")):
        if path.name.endswith(_SUFFIXES) and path.is_file():
            index.setdefault(module_name(path), Module(module_name(path), path))
    return index


def _read_modules_dep(modules_dir: Path) -> dict[str, list[str]] | None:
    dep_file = modules_dir / "modules.dep"
    if not dep_file.is_file():
        return None
    deps: dict[str, list[str]] = {}
    for line in dep_file.read_text().splitlines():
        target, sep, rest = line.partition(":")
        if sep:
            deps[module_name(target)] = [module_name(d) for d in rest.split()]
    return deps


def _builtin(modules_dir: Path) -> set[str]:
    path = modules_dir / "modules.builtin"
    if not path.is_file():
        return set()
    return {module_name(line) for line in path.read_text().split()}


def resolve_modules(
    modules_dir: Path,
    required: tuple[str, ...] = REQUIRED_MODULES,
    optional: tuple[str, ...] = OPTIONAL_MODULES,
    loaded: frozenset[str] = frozenset(),
) -> list[Module]:
    """The needed modules and their dependencies, every module after the ones it depends on;
    none of ``loaded`` (another list, loaded before)."""
    index = index_modules(modules_dir)
    dep_table = _read_modules_dep(modules_dir)
    builtin = _builtin(modules_dir)
    ordered: list[Module] = []
    done: set[str] = set(loaded)

    def deps_of(name: str) -> list[str]:
        if dep_table is not None and name in dep_table:
            return dep_table[name]
        raw = modinfo(read_module(index[name].path)).get("depends", "")
        return [module_name(d) for d in raw.split(",") if d]

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in done or name in stack:
            return
        if name not in index:
            if name not in builtin:
                raise IgniteError(
                    f"kernel module {name} (needed by {' -> '.join(stack) or 'the VM'}) is missing"
                    f" from {modules_dir}",
                    hint="import the kernel with its complete modules directory",
                )
            return
        for dep in deps_of(name):
            visit(dep, (*stack, name))
        done.add(name)
        ordered.append(index[name])

    for name in required:
        if name in index:
            visit(name, ())
        elif name not in builtin:
            log.warning("module %s not found in %s; assuming it is built in", name, modules_dir)
    for name in optional:
        if name in index:
            visit(name, ())
    return ordered
