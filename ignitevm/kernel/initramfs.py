"""Build the kernel's base initramfs and the per-VM layer appended to it (docs/internals.md)."""

from __future__ import annotations

import logging
import os
import re
import shlex
import stat
import struct
from collections.abc import Mapping
from importlib import resources
from pathlib import Path, PurePosixPath

from ignitevm import proc
from ignitevm.errors import IgniteError, ValidationError
from ignitevm.fsutil import PRIVATE_MODE, create_file
from ignitevm.kernel.cpio import CpioWriter
from ignitevm.kernel.modules import (
    SHARE_MODULES,
    Module,
    read_module,
    resolve_modules,
    strip_signature,
)
from ignitevm.kernel.reseed import reseed_program

log = logging.getLogger(__name__)

_DIRS = ("dev", "proc", "sys", "run", "tmp", "newroot", "etc/ignitevm", "lib/modules", "ignite")
_LDD_LINE = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def init_script() -> bytes:
    """The /init shipped as package data (``ignitevm/kernel/init.sh``)."""
    return resources.files("ignitevm.kernel").joinpath("init.sh").read_bytes()


def agent_script() -> bytes:
    """The guest agent (``ignitevm/kernel/agent.sh``), which /init starts."""
    return resources.files("ignitevm.kernel").joinpath("agent.sh").read_bytes()


def is_static_elf(data: bytes) -> bool:
    """True for an ELF without a program interpreter (PT_INTERP), i.e. statically linked."""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return False
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return all(struct.unpack_from("<I", data, phoff + i * phentsize)[0] != 3 for i in range(phnum))


def _add_busybox(cpio: CpioWriter) -> None:
    busybox = Path(proc.require_tool("busybox")).resolve()
    data = busybox.read_bytes()
    if not is_static_elf(data):
        raise IgniteError(
            f"{busybox} is not statically linked: it cannot run in the initramfs",
            hint="apt-get install busybox-static",
        )
    cpio.file("bin/busybox", data, 0o755)
    applets = proc.output([busybox, "--list-full"]).split()
    for applet in sorted(set(applets)):
        if applet != "bin/busybox":
            cpio.symlink(applet, "/bin/busybox")


def _shared_libs(binary: str) -> list[str]:
    """Absolute paths of ``binary``'s shared libraries and loader, as ldd prints them."""
    ldd = proc.find_tool("ldd")
    if ldd is None:
        raise IgniteError("ldd is not installed", hint="apt-get install libc-bin")
    libs = {m.group(1) for m in _LDD_LINE.finditer(proc.output([ldd, binary]))}
    return sorted(libs)


def _add_resize2fs(cpio: CpioWriter) -> None:
    resize2fs = proc.find_tool("resize2fs")
    if resize2fs is None:
        log.warning("resize2fs not found: VM disks will not grow (apt-get install e2fsprogs)")
        return
    cpio.file("sbin/resize2fs", Path(resize2fs).read_bytes(), 0o755)
    for lib in _shared_libs(resize2fs):
        # Store the real file under the path the loader asks for (symlinks resolved).
        cpio.file(lib, Path(lib).resolve().read_bytes(), 0o755)


def _add_modules(cpio: CpioWriter, modules: list[Module]) -> list[str]:
    names = []
    for module in modules:
        name = f"{module.name}.ko"
        # Unsigned copies: Debian's kernel checks each signature (not enforced) and under TCG
        # that costs a boot ~0.3 s for these 15 modules; the kernel notes the taint (E) once.
        cpio.file(f"lib/modules/{name}", strip_signature(read_module(module.path)), 0o644)
        names.append(name)
    return names


def build_initramfs(out: Path, *, modules_dir: Path | None, version: str) -> None:
    """Write the kernel's base initramfs (uncompressed newc) to ``out``, atomically."""
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("wb") as fh:
        cpio = CpioWriter(fh)
        for d in _DIRS:
            cpio.directory(d)
        cpio.directory("root", 0o700)
        cpio.device("dev/console", char=True, major=5, minor=1)
        cpio.file("init", init_script(), 0o755)
        cpio.symlink("etc/mtab", "/proc/mounts")
        _add_busybox(cpio)
        _add_resize2fs(cpio)
        base = resolve_modules(modules_dir) if modules_dir is not None else []
        names = _add_modules(cpio, base)
        cpio.file("etc/ignitevm/modules", "".join(f"{n}\n" for n in names).encode())
        if modules_dir is not None:
            loaded = frozenset(m.name for m in base)
            share = resolve_modules(modules_dir, (), SHARE_MODULES, loaded)
            if share:
                listed = "".join(f"{n}\n" for n in _add_modules(cpio, share))
                cpio.file("etc/ignitevm/modules.9p", listed.encode())
        cpio.file("etc/ignitevm/version", f"{version}\n".encode())
        cpio.close()
    os.replace(tmp, out)
    log.debug("initramfs %s: %d modules", out, len(names))


def _clean(path: str) -> str:
    pure = PurePosixPath(path)
    if not pure.is_absolute() or ".." in pure.parts:
        raise ValidationError(
            f"per-VM file destination {path!r} must be an absolute path without '..'"
        )
    return str(pure)


def _content(src: bytes | Path) -> tuple[bytes, int]:
    if isinstance(src, bytes):
        return src, 0o644
    try:
        return src.read_bytes(), stat.S_IMODE(src.stat().st_mode)
    except OSError as exc:
        raise IgniteError(f"cannot read {src}: {exc.strerror}") from exc


def _write_tree(
    cpio: CpioWriter,
    prefix: str,
    files: Mapping[str, bytes | Path],
    modes: Mapping[str, int],
    dir_modes: Mapping[str, int],
) -> None:
    cleaned = {_clean(dest): src for dest, src in files.items()}
    dirs: set[str] = set()
    for dest in cleaned:
        dirs.update(str(p) for p in PurePosixPath(dest).parents if str(p) != "/")
    for d in sorted(dirs):
        # ssh refuses keys in a group- or world-readable ~/.ssh: 0700 unless told otherwise.
        default = 0o700 if PurePosixPath(d).name == ".ssh" else 0o755
        cpio.directory(prefix + d, dir_modes.get(d, default))
    for dest, src in sorted(cleaned.items()):
        data, mode = _content(src)
        cpio.file(prefix + dest, data, modes.get(dest, mode))


def write_vm_layer(
    out: Path,
    *,
    files: Mapping[str, bytes | Path],
    firstboot: Mapping[str, bytes | Path] | None = None,
    env: Mapping[str, str] | None = None,
    modes: Mapping[str, int] | None = None,
    dir_modes: Mapping[str, int] | None = None,
    file_mode: int = PRIVATE_MODE,
) -> None:
    """Write the per-VM cpio: ``/ignite/files/<abs path>`` (copied at every boot),
    ``/ignite/firstboot/<abs path>`` (copied once) and ``/ignite/env`` (sourced by /init).

    It also carries this ignitevm's ``/init``, which replaces the one in the kernel's initramfs
    (the later archive wins): /init belongs to the running ignitevm, not to the day the kernel
    was imported, so new /init features reach kernels imported before them.

    ``modes`` overrides file modes by destination (a Path source keeps its own mode, bytes get
    0644); ``dir_modes`` sets modes of directories /init creates (``.ssh`` defaults to 0700).
    The archive itself is created with ``file_mode`` (private: it carries copy-files and keys).
    """
    modes = modes or {}
    dir_modes = dir_modes or {}
    tmp = out.with_name(out.name + ".tmp")
    with create_file(tmp, file_mode) as fh:
        cpio = CpioWriter(fh)
        cpio.file("init", init_script(), 0o755)
        cpio.file("agent.sh", agent_script(), 0o755)
        cpio.file("sbin/ignite-reseed", reseed_program(), 0o755)
        cpio.directory("ignite", 0o700)
        cpio.directory("ignite/files", 0o755)
        cpio.directory("ignite/firstboot", 0o755)
        _write_tree(cpio, "ignite/files", files, modes, dir_modes)
        _write_tree(cpio, "ignite/firstboot", firstboot or {}, modes, dir_modes)
        if env:
            for key in env:
                if not _ENV_KEY.match(key):
                    raise ValidationError(f"invalid environment variable name {key!r}")
            text = "".join(f"{k}={shlex.quote(v)}\n" for k, v in sorted(env.items()))
            cpio.file("ignite/env", text.encode(), 0o600)
        cpio.close()
    os.replace(tmp, out)
