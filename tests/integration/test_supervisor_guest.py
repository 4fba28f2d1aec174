"""A tiny guest for the supervisor's integration tests and bench: Debian's kernel as an ELF
vmlinux and a busybox initramfs whose /init prints a marker, handles the ACPI power button with
acpid, echoes console input, and powers off on ``poweroff``. Cached under _out/vmmtest."""

from __future__ import annotations

import lzma
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ignitevm import proc

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "_out" / "vmmtest"
DEB_CACHE = REPO / "_out" / "cache"
MARKER = "TEST-BOOT-MARKER"
# dependency order (no modules.dep in the package: depmod runs at install time)
MODULES = (
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_mmio.ko",
    "drivers/block/virtio_blk.ko",
    "net/core/failover.ko",
    "drivers/net/net_failover.ko",
    "drivers/net/virtio_net.ko",
    "drivers/acpi/button.ko",
    "drivers/input/evdev.ko",
)
INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in {modules}; do insmod /lib/modules/$m.ko; done
mkdir -p /etc/acpi/PWRF
printf '#!/bin/sh\\necho guest: power button pressed\\npoweroff -f\\n' > /etc/acpi/PWRF/00000080
chmod +x /etc/acpi/PWRF/00000080
acpid -d -c /etc/acpi 2>/dev/null &
acpid_pid=$!
# The button press is lost unless acpid already listens: print the marker only then.
until ls -l /proc/$acpid_pid/fd 2>/dev/null | grep -q /dev/input/event; do sleep 0.05; done
echo "disks: $(ls /sys/block | tr '\\n' ' ')"
echo "nics: $(ls /sys/class/net | tr '\\n' ' ')"
echo "cmdline: $(cat /proc/cmdline)"
echo {marker}
while read -r line; do
    echo "echo: $line"
    case "$line" in
        poweroff) poweroff -f ;;
        nobutton) kill $acpid_pid; echo "guest: acpid stopped" ;;
    esac
done
sleep 100000
"""


@dataclass(frozen=True)
class Guest:
    vmlinux: Path
    initrd: Path


def _kernel_deb() -> Path:
    debs = sorted(DEB_CACHE.glob("linux-image-*-amd64_*.deb"))
    if debs:
        return debs[-1]
    DEB_CACHE.mkdir(parents=True, exist_ok=True)
    depends = proc.output(["apt-cache", "depends", "linux-image-amd64"])
    pkg = next(
        line.split()[-1]
        for line in depends.splitlines()
        if line.strip().startswith("Depends: linux-image-")
    )
    proc.run(["apt-get", "download", "-q", pkg], cwd=DEB_CACHE)
    return sorted(DEB_CACHE.glob("linux-image-*-amd64_*.deb"))[-1]


def _extract_vmlinux(vmlinuz: Path, out: Path) -> None:
    data = vmlinuz.read_bytes()
    start = data.find(b"\xfd7zXZ\x00")
    assert start >= 0, f"{vmlinuz} is not an XZ bzImage"
    elf = lzma.LZMADecompressor().decompress(data[start:])
    assert elf[:4] == b"\x7fELF"
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(elf)
    tmp.rename(out)


def _newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """An uncompressed newc cpio archive of (name, mode, data)."""
    out = bytearray()

    def add(ino: int, name: str, mode: int, data: bytes) -> None:
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        out.extend(b"070701" + b"".join(b"%08X" % f for f in fields) + encoded)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (name, mode, data) in enumerate(entries, start=1):
        add(ino, name, mode, data)
    add(0, "TRAILER!!!", 0, b"")
    return bytes(out)


def _build_initrd(moddir: Path, out: Path) -> None:
    names = [Path(m).stem for m in MODULES]
    init = INIT.format(modules=" ".join(names), marker=MARKER).encode()
    entries: list[tuple[str, int, bytes]] = [
        (d, 0o40755, b"") for d in ("bin", "dev", "proc", "sys", "etc", "lib", "lib/modules")
    ]
    entries.append(("bin/busybox", 0o100755, Path(proc.require_tool("busybox")).read_bytes()))
    entries.append(("init", 0o100755, init))
    for mod in MODULES:
        entries.append((f"lib/modules/{Path(mod).name}", 0o100644, (moddir / mod).read_bytes()))
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(_newc(entries))
    tmp.rename(out)


def ensure_guest() -> Guest:
    """Build (once) and return the test kernel and initramfs."""
    vmlinux, initrd = CACHE / "vmlinux", CACHE / "initrd-test.cpio"
    stamp = CACHE / "initrd-test.init"
    if vmlinux.exists() and initrd.exists() and stamp.exists() and stamp.read_text() == INIT:
        return Guest(vmlinux, initrd)
    CACHE.mkdir(parents=True, exist_ok=True)
    work = CACHE / "deb"
    shutil.rmtree(work, ignore_errors=True)
    proc.run(["dpkg-deb", "-x", _kernel_deb(), work])
    try:
        if not vmlinux.exists():
            _extract_vmlinux(next((work / "boot").glob("vmlinuz-*")), vmlinux)
        moddir = next((work / "lib" / "modules").iterdir()) / "kernel"
        _build_initrd(moddir, initrd)
        stamp.write_text(INIT)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Guest(vmlinux, initrd)


def make_disk(path: Path, size_mib: int = 16) -> Path:
    with open(path, "wb") as f:
        f.truncate(size_mib << 20)
    os.chmod(path, 0o600)
    return path
