"""Where kernels come from: a Debian linux-image package, or an OCI image's root filesystem."""

from __future__ import annotations

import logging
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from ignitevm import proc
from ignitevm.errors import IgniteError, NotFoundError
from ignitevm.kernel.vmlinux import detect_version, to_vmlinux
from ignitevm.untar import UnsafeTarError, extract_safely

log = logging.getLogger(__name__)

_MODULE_ROOTS = ("lib/modules", "usr/lib/modules")


@dataclass(frozen=True)
class FoundKernel:
    vmlinux: Path  # uncompressed ELF
    version: str  # e.g. "6.1.0-28-amd64"
    modules_dir: Path | None  # .../lib/modules/<version>, or None (everything built in)


def _ar_members(fh: IO[bytes]) -> Iterator[tuple[str, int, int]]:
    """(name, offset, size) of every member of a Unix ar archive (the .deb container)."""
    if fh.read(8) != b"!<arch>\n":
        raise IgniteError("not a Debian package (no ar header)", hint="pass a linux-image-*.deb")
    pos = 8
    while True:
        fh.seek(pos)
        header = fh.read(60)
        if len(header) < 60:
            return
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        yield name, pos + 60, size
        pos += 60 + size + (size % 2)


class _Window:
    """A read-only file view of ``size`` bytes at ``offset`` (tarfile streams from it)."""

    def __init__(self, fh: IO[bytes], offset: int, size: int) -> None:
        self._fh, self._pos, self._end = fh, offset, offset + size

    def read(self, n: int = -1) -> bytes:
        if n < 0 or self._pos + n > self._end:
            n = self._end - self._pos
        self._fh.seek(self._pos)
        data = self._fh.read(n)
        self._pos += len(data)
        return data


def _wanted(name: str) -> bool:
    path = PurePosixPath(name.removeprefix("./"))
    if path.parts[:1] == ("boot",):
        return path.name.startswith(("vmlinuz", "vmlinux", "config-"))
    return any(str(path).startswith(root + "/") for root in _MODULE_ROOTS)


def _extract_data_tar(deb: Path, dest: Path) -> None:
    with deb.open("rb") as fh:
        member = next((m for m in _ar_members(fh) if m[0].startswith("data.tar")), None)
        if member is None:
            raise IgniteError(f"{deb} has no data.tar member", hint="pass a linux-image-*.deb")
        name, offset, size = member
        stream: IO[bytes]
        if name.endswith(".zst"):
            import zstandard  # lazy

            raw = _Window(fh, offset, size)
            stream = zstandard.ZstdDecompressor().stream_reader(raw)  # type: ignore[arg-type]
            mode = "r|"
        else:
            stream = _Window(fh, offset, size)  # type: ignore[assignment]
            mode = {"data.tar.xz": "r|xz", "data.tar.gz": "r|gz", "data.tar.bz2": "r|bz2"}.get(
                name, "r|"
            )
        try:
            with tarfile.open(fileobj=stream, mode=mode) as tar:  # type: ignore[call-overload]
                for info in tar:
                    if _wanted(info.name) and (info.isfile() or info.isdir() or info.issym()):
                        # refuses members and links that leave ``dest`` (Python's "data")
                        extract_safely(tar, dest, info, data=True)
        except (tarfile.TarError, EOFError, OSError, UnsafeTarError) as exc:
            raise IgniteError(
                f"{deb}: cannot unpack {name}: {exc}", hint="is the package complete and genuine?"
            ) from exc


def extract_deb(deb: Path, workdir: Path) -> FoundKernel:
    """Unpack a Debian ``linux-image-*.deb``: the ELF kernel to ``workdir/vmlinux``, its modules
    under ``workdir/rootfs/lib/modules/<version>``."""
    if not deb.is_file():
        raise NotFoundError(f"kernel package {deb} does not exist")
    rootfs = workdir / "rootfs"
    rootfs.mkdir(parents=True, exist_ok=True)
    if proc.find_tool("dpkg-deb"):
        # dpkg-deb extracts in parallel with xz's threads: ~2x faster than tarfile.
        proc.run(["dpkg-deb", "-x", deb, rootfs], hint=f"is {deb} a Debian package?")
    else:
        _extract_data_tar(deb, rootfs)
    try:
        return find_kernel_in_rootfs(rootfs, workdir)
    except NotFoundError as exc:
        raise NotFoundError(f"{deb} holds no kernel: {exc.message}", hint=exc.hint) from exc


def _inside(rootfs: Path, rel: str) -> Path | None:
    """Resolve ``rel`` inside ``rootfs`` following symlinks as if rootfs were /, or None."""
    path = rootfs
    parts = list(PurePosixPath(rel).parts)
    hops = 0
    while parts:
        part = parts.pop(0)
        if part in ("/", "."):
            continue
        if part == "..":
            path = path.parent if path != rootfs else rootfs
            continue
        nxt = path / part
        if nxt.is_symlink():
            hops += 1
            if hops > 40:
                return None
            target = PurePosixPath(str(nxt.readlink()))
            path = rootfs if target.is_absolute() else path
            parts = list(target.parts) + parts
            continue
        path = nxt
    return path if path.exists() else None


def _version_key(name: str) -> list[int | str]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def _find_image(rootfs: Path) -> Path | None:
    for rel in ("boot/vmlinux", "boot/vmlinuz", "vmlinux"):
        if (found := _inside(rootfs, rel)) is not None and found.is_file():
            return found
    boot = _inside(rootfs, "boot")
    if boot is None or not boot.is_dir():
        return None
    candidates = [p for p in boot.iterdir() if p.name.startswith(("vmlinux-", "vmlinuz-"))]
    candidates.sort(key=lambda p: _version_key(p.name), reverse=True)
    for cand in candidates:
        if (found := _inside(rootfs, f"boot/{cand.name}")) is not None and found.is_file():
            return found
    return None


def _find_modules(rootfs: Path, version: str | None) -> Path | None:
    dirs: list[Path] = []
    for root in _MODULE_ROOTS:
        base = _inside(rootfs, root)
        if base is not None and base.is_dir():
            dirs.extend(sorted(p for p in base.iterdir() if p.is_dir()))
    if version is not None:
        for d in dirs:
            if d.name == version:
                return d
    return dirs[0] if len(dirs) == 1 else None


def find_kernel_in_rootfs(rootfs: Path, workdir: Path) -> FoundKernel:
    """Ignite's kernel image convention: ``/boot/vmlinux`` or ``/boot/vmlinuz-*`` plus
    ``/lib/modules/<version>``. The ELF kernel is written to ``workdir/vmlinux``."""
    image = _find_image(rootfs)
    if image is None:
        raise NotFoundError(
            f"no kernel in {rootfs}: no /boot/vmlinux or /boot/vmlinuz-*",
            hint="a kernel image carries /boot/vmlinux (or vmlinuz-<version>) and /lib/modules",
        )
    workdir.mkdir(parents=True, exist_ok=True)
    vmlinux = workdir / "vmlinux"
    to_vmlinux(image, vmlinux)
    modules = _find_modules(rootfs, None)
    try:
        version = detect_version(vmlinux, modules)
    except IgniteError:
        version = image.name.partition("-")[2] or "unknown"
    modules = _find_modules(rootfs, version)
    if modules is not None and modules.name != version:
        log.warning("modules directory %s does not match kernel version %s", modules, version)
    log.debug("kernel %s: %s, modules %s", version, image, modules)
    return FoundKernel(vmlinux=vmlinux, version=version, modules_dir=modules)
