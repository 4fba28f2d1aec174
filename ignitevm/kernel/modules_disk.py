"""The kernel's whole modules tree as a read-only ext4 disk for the guest (label ignite-modules).

The initramfs carries only what booting needs; a guest that loads more (br_netfilter, iptables,
...) gets the rest from this disk, which /init mounts at ``/lib/modules/$(uname -r)`` when it is
attached. Debian's package ships no ``modules.dep``: depmod (kmod) writes the indexes modprobe
needs, else a text ``modules.dep`` is generated here (enough for busybox modprobe).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from ignitevm import proc
from ignitevm.disk.ownership import OwnerTable, apply_ownership, quote
from ignitevm.errors import IgniteError
from ignitevm.kernel.modules import index_modules, modinfo, module_name, read_module

log = logging.getLogger(__name__)

MODULES_LABEL = "ignite-modules"
_BLOCK = 4096
_INDEXES = (
    "modules.dep", "modules.dep.bin", "modules.alias", "modules.alias.bin", "modules.softdep",
    "modules.symbols", "modules.symbols.bin", "modules.builtin.bin", "modules.builtin.alias.bin",
    "modules.devname",
)  # fmt: skip


def _tree_bytes(root: Path) -> tuple[int, int]:
    """(bytes rounded up to blocks, number of entries) of a directory tree."""
    total = entries = 0
    for dirpath, dirnames, filenames in os.walk(root):
        entries += len(dirnames) + len(filenames)
        for name in filenames:
            size = os.lstat(os.path.join(dirpath, name)).st_size
            total += -(-size // _BLOCK) * _BLOCK
    return total, entries


def _symlink_stage(modules_dir: Path, stage: Path, version: str) -> Path:
    """A tree of symlinks to the modules, for depmod -b (it must not write into the source)."""
    target = stage / "lib/modules" / version
    for dirpath, _dirnames, filenames in os.walk(modules_dir):
        rel = Path(dirpath).relative_to(modules_dir)
        (target / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            if name not in _INDEXES:
                (target / rel / name).symlink_to(Path(dirpath, name).resolve())
    return target


def _python_modules_dep(modules_dir: Path, out: Path) -> None:
    """modules.dep in depmod's text format, from each module's .modinfo ``depends=``."""
    index = index_modules(modules_dir)
    direct: dict[str, list[str]] = {}
    for name, module in index.items():
        raw = modinfo(read_module(module.path)).get("depends", "")
        direct[name] = [module_name(d) for d in raw.split(",") if d and module_name(d) in index]

    def closure(name: str) -> list[str]:
        seen: list[str] = []
        stack = list(direct[name])
        while stack:
            dep = stack.pop(0)
            if dep not in seen:
                seen.append(dep)
                stack.extend(direct.get(dep, []))
        return seen

    lines = []
    for name, module in sorted(index.items(), key=lambda kv: str(kv[1].path)):
        rel = module.path.relative_to(modules_dir)
        deps = " ".join(str(index[d].path.relative_to(modules_dir)) for d in closure(name))
        lines.append(f"{rel}:{' ' + deps if deps else ''}\n")
    (out / "modules.dep").write_text("".join(lines))


def _generate_indexes(modules_dir: Path, version: str, work: Path) -> Path:
    depmod = proc.find_tool("depmod")
    if depmod is not None:
        target = _symlink_stage(modules_dir, work / "stage", version)
        proc.run([depmod, "-b", work / "stage", version], hint="is the modules tree complete?")
        return target
    log.warning("depmod (kmod) not found: generating only a text modules.dep")
    out = work / "indexes"
    out.mkdir()
    _python_modules_dep(modules_dir, out)
    return out


def build_modules_image(modules_dir: Path, out: Path, *, version: str) -> int:
    """Write a sparse read-only ext4 of ``modules_dir`` plus modprobe's indexes; return its size."""
    if not modules_dir.is_dir():
        raise IgniteError(f"modules directory {modules_dir} does not exist")
    mkfs, debugfs = proc.require_tool("mkfs.ext4"), proc.require_tool("debugfs")
    data, entries = _tree_bytes(modules_dir)
    size = -(-int(data * 1.1 + entries * 512 + (24 << 20)) // (1 << 20)) << 20
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    with tempfile.TemporaryDirectory(prefix="modules-", dir=out.parent) as work:
        indexes = _generate_indexes(modules_dir, version, Path(work))
        try:
            with tmp.open("wb") as fh:
                fh.truncate(size)
            # No journal: the guest mounts it read-only.
            argv = [mkfs, "-q", "-F", "-t", "ext4", "-b", str(_BLOCK), "-O", "^has_journal"]
            argv += ["-L", MODULES_LABEL, "-E", "root_owner=0:0", "-d", str(modules_dir), str(tmp)]
            proc.run(argv)
            _add_indexes(debugfs, tmp, indexes, modules_dir)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    log.debug("modules image %s: %d bytes", out, size)
    return size


def _add_indexes(debugfs: str, image: Path, indexes: Path, modules_dir: Path) -> None:
    """Write modprobe's indexes into the image's root (no copy of 400 MB of modules first)."""
    names = [n for n in _INDEXES if (indexes / n).is_file() and not (indexes / n).is_symlink()]
    script = b"".join(
        b"rm %s\nwrite %s %s\n" % (n.encode(), quote(os.fsencode(indexes / n)), n.encode())
        for n in names
    )
    if os.geteuid() != 0:
        # unpacked and written as this user: the guest sees root's modules, as after a root
        # import (disk/ownership.py)
        apply_ownership(image, modules_dir, OwnerTable())
        script += b"".join(
            b"sif %s uid 0\nsif %s gid 0\n" % (n.encode(), n.encode()) for n in names
        )
    proc.run([debugfs, "-w", "-f", "-", image], input=script)
