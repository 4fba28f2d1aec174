"""A tiny guest for the supervisor's integration tests and bench: Debian's kernel as an ELF
vmlinux and a busybox initramfs whose /init prints a marker, handles the ACPI power button with
acpid, echoes console input, and powers off on ``poweroff``. Cached under _out/vmmtest."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ignitevm import proc
from ignitevm.kernel import CpioWriter, extract_deb
from ignitevm.kernel.apt import download_package

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


def _build_initrd(moddir: Path, out: Path) -> None:
    names = [Path(m).stem for m in MODULES]
    init = INIT.format(modules=" ".join(names), marker=MARKER).encode()
    tmp = out.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        cpio = CpioWriter(fh)
        for d in ("dev", "proc", "sys", "etc"):
            cpio.directory(d)
        cpio.file("bin/busybox", Path(proc.require_tool("busybox")).read_bytes(), 0o755)
        cpio.file("init", init, 0o755)
        for mod in MODULES:
            cpio.file(f"lib/modules/{Path(mod).name}", (moddir / mod).read_bytes())
        cpio.close()
    tmp.rename(out)


def ensure_guest() -> Guest:
    """Build (once) and return the test kernel and initramfs (ignitevm.kernel does the work)."""
    vmlinux, initrd = CACHE / "vmlinux", CACHE / "initrd-test.cpio"
    stamp = CACHE / "initrd-test.init"
    if vmlinux.exists() and initrd.exists() and stamp.exists() and stamp.read_text() == INIT:
        return Guest(vmlinux, initrd)
    CACHE.mkdir(parents=True, exist_ok=True)
    work = CACHE / "work"
    shutil.rmtree(work, ignore_errors=True)
    try:
        files = extract_deb(download_package("linux-image-amd64", DEB_CACHE), work)
        assert files.modules_dir is not None
        _build_initrd(files.modules_dir / "kernel", initrd)
        files.vmlinux.rename(vmlinux)
        stamp.write_text(INIT)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Guest(vmlinux, initrd)


def make_disk(path: Path, size_mib: int = 16) -> Path:
    with open(path, "wb") as f:
        f.truncate(size_mib << 20)
    os.chmod(path, 0o600)
    return path
