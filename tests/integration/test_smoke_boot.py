"""Smoke boot: Debian's kernel + our initramfs boot the default image under QEMU TCG.

One QEMU at a time, each under `timeout` and killed in teardown. Console markers are the
contract of docs/internals.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ignitevm.kernel import build_initramfs, extract_deb, kernel_cmdline, write_vm_layer
from ignitevm.kernel.modules_disk import build_modules_image

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DEB_CACHE = ROOT / "_out" / "cache" / "debs"
BOOT_TIMEOUT = 90.0


def _need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")


@dataclass
class Kernel:
    vmlinux: Path
    initrd: Path
    modules: Path  # the ignite-modules disk


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    _need("qemu-system-x86_64", "qemu-img", "mkfs.ext4", "apt-get", "busybox")
    deb = Path(
        subprocess.run(
            [sys.executable, "-m", "ignitevm.kernel.apt", str(DEB_CACHE)],
            capture_output=True, text=True, check=True, timeout=600,
        ).stdout.strip()
    )  # fmt: skip
    work = tmp_path_factory.mktemp("kernel")
    try:
        files = extract_deb(deb, work / "deb")
        initrd = work / "initrd.cpio"
        build_initramfs(initrd, modules_dir=files.modules_dir, version=files.version)
        vmlinux = work / "vmlinux"
        files.vmlinux.rename(vmlinux)
        assert files.modules_dir is not None
        modules = work / "modules.ext4"
        build_modules_image(files.modules_dir, modules, version=files.version)
        shutil.rmtree(work / "deb")  # the extracted tree is not needed any more
        yield Kernel(vmlinux, initrd, modules)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _unpack_default_image(work: Path) -> Path:
    """The default image as an OCI archive, imported by ignitevm.oci when it is there."""
    rootfs = work / "rootfs"
    try:
        from ignitevm.oci import FetchOptions, resolve_image, unpack_image
    except ImportError:  # the OCI importer is another component; the image builder can do it
        subprocess.run([sys.executable, str(ROOT / "images/build.py"), "--output",
                        f"dir:{rootfs}", "--cache", str(DEB_CACHE)], check=True)  # fmt: skip
        return rootfs
    archive = work / "default.oci.tar"
    subprocess.run([sys.executable, str(ROOT / "images/build.py"), "--output",
                    f"oci-archive:{archive}", "--cache", str(DEB_CACHE)], check=True)  # fmt: skip
    opts = FetchOptions(cache_dir=work / "blobs")
    unpack_image(resolve_image(f"oci-archive:{archive}", opts), rootfs, opts)
    return rootfs


@pytest.fixture(scope="module")
def base_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The default image as a read-only ext4 base labeled ignite-image."""
    work = tmp_path_factory.mktemp("image")
    try:
        rootfs = _unpack_default_image(work)
        out = work / "image.ext4"
        try:
            from ignitevm.disk.base import build_base_image
        except ImportError:
            subprocess.run(["truncate", "-s", "64M", out], check=True)
            subprocess.run(["mkfs.ext4", "-q", "-b", "4096", "-d", rootfs, "-E", "root_owner=0:0",
                            "-L", "ignite-image", "-J", "size=4", out], check=True)  # fmt: skip
        else:
            build_base_image(rootfs, out)
        shutil.rmtree(rootfs)
        yield out
    finally:
        shutil.rmtree(work, ignore_errors=True)


@dataclass
class Console:
    lines: list[tuple[float, str]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    closed: bool = False

    @property
    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def wait_for(self, pattern: str, timeout: float) -> float:
        """Seconds since launch when a line matching ``pattern`` appeared."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for when, line in self.lines:
                    if regex.search(line):
                        return when
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    raise AssertionError(f"no console line matches {pattern!r}:\n{self.text}")
                self.cond.wait(left)


@dataclass
class Guest:
    proc: subprocess.Popen[bytes]
    console: Console
    qmp: Path

    def powerdown(self) -> None:
        """Press the ACPI power button (QMP system_powerdown); a no-op once QEMU is gone."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self.qmp))
            f = sock.makefile("rw")
            f.readline()
            for cmd in ("qmp_capabilities", "system_powerdown"):
                f.write(json.dumps({"execute": cmd}) + "\n")
                f.flush()
                f.readline()


def _pump(proc: subprocess.Popen[bytes], console: Console, start: float) -> None:
    assert proc.stdout is not None
    for raw in proc.stdout:
        with console.cond:
            console.lines.append((time.monotonic() - start, raw.decode(errors="replace").rstrip()))
            console.cond.notify_all()
    with console.cond:
        console.closed = True
        console.cond.notify_all()


Boot = Callable[..., Guest]


@pytest.fixture
def boot(kernel: Kernel, tmp_path: Path) -> Iterator[Boot]:
    """boot(drives, cmdline_extra, layer=None) -> Guest; QEMU is killed in teardown."""
    started: list[subprocess.Popen[bytes]] = []
    default_kernel = kernel

    def launch(
        drives: list[str],
        extra: str,
        cow: str = "qcow2",
        layer: Path | None = None,
        user_net: bool = False,
        kernel: tuple[Path, Path] | None = None,
    ) -> Guest:
        """Boot ``drives``; ``kernel`` = (vmlinux, initrd) instead of the Debian test kernel."""
        vmlinux, base_initrd = kernel or (default_kernel.vmlinux, default_kernel.initrd)
        initrd = base_initrd
        if layer is not None:
            initrd = tmp_path / "initrd"
            initrd.write_bytes(base_initrd.read_bytes() + layer.read_bytes())
        qmp = tmp_path / "qmp.sock"
        qmp.unlink(missing_ok=True)
        argv = ["timeout", "-s", "KILL", str(int(BOOT_TIMEOUT) + 210), "qemu-system-x86_64",
                "-M", "microvm,acpi=on", "-accel", "tcg", "-cpu", "max", "-m", "256",
                "-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-serial", "stdio",
                "-kernel", str(vmlinux), "-initrd", str(initrd),
                "-append", kernel_cmdline(cow=cow, extra=extra),
                "-qmp", f"unix:{qmp},server=on,wait=off"]  # fmt: skip
        for i, drive in enumerate(drives):
            argv += [
                "-drive",
                f"id=d{i},if=none,{drive}",
                "-device",
                f"virtio-blk-device,drive=d{i}",
            ]
        if user_net:  # QEMU's user-mode network: its own DHCP server, nothing on the host
            argv += ["-netdev", "user,id=n0", "-device", "virtio-net-device,netdev=n0"]
        start = time.monotonic()
        # A session of its own: teardown kills `timeout` and QEMU together (killing only
        # `timeout` would orphan QEMU).
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        started.append(proc)
        console = Console()
        threading.Thread(target=_pump, args=(proc, console, start), daemon=True).start()
        return Guest(proc, console, qmp)

    yield launch
    for proc in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # QEMU too, even after `timeout` itself exited
        proc.wait(timeout=30)


def _qcow2(base: Path, out: Path, size: str) -> None:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(base),
                    str(out), size], check=True)  # fmt: skip


def test_read_only_base_boots_to_the_image_init(boot: Boot, base_image: Path) -> None:
    guest = boot([f"file={base_image},format=raw,readonly=on"], "")
    started = guest.console.wait_for(r"ignitevm-init: started", BOOT_TIMEOUT)
    execed = guest.console.wait_for(r"ignitevm-init: exec /sbin/init", BOOT_TIMEOUT)
    sysinit = guest.console.wait_for(r"ignitevm-default: sysinit done", BOOT_TIMEOUT)
    assert "FATAL" not in guest.console.text
    print(f"\nread-only boot: started {started:.2f}s, exec {execed:.2f}s, sysinit {sysinit:.2f}s")


def test_qcow2_root_grows_and_gets_the_vm_layer(
    boot: Boot, base_image: Path, tmp_path: Path
) -> None:
    disk = tmp_path / "disk.qcow2"
    _qcow2(base_image, disk, "2G")
    report = (
        b"#!/bin/sh\n"
        b"echo \"REPORT size=$(df -k / | awk 'NR==2{print $2}') file=$(cat /etc/vm-file)\"\n"
    )
    layer = tmp_path / "vm.cpio"
    write_vm_layer(
        layer,
        files={"/etc/vm-file": b"from-the-layer\n"},
        firstboot={"/etc/init.d/S50report": report},
        modes={"/etc/init.d/S50report": 0o755},
    )
    guest = boot([f"file={disk},format=qcow2"], "ignite.hostname=smoke", layer=layer)
    guest.console.wait_for(r"ignitevm-init: exec /sbin/init", BOOT_TIMEOUT)
    guest.console.wait_for(r"REPORT size=", BOOT_TIMEOUT)
    line = next(line for _, line in guest.console.lines if "REPORT size=" in line)
    size_kib = int(re.search(r"size=(\d+)", line).group(1))  # type: ignore[union-attr]
    assert size_kib > 1800 * 1024, line  # grown from the tens-of-MB base to ~2 GiB
    assert "file=from-the-layer" in line
    sshd = guest.console.wait_for(r"sshd \(dropbear\) listening", BOOT_TIMEOUT)
    # The ACPI power button (QMP system_powerdown) shuts the image down through busybox acpid.
    # acpid starts alongside sshd; a press before it opened the input device is lost, so retry.
    for _ in range(10):
        guest.powerdown()
        try:
            guest.console.wait_for(r"power button pressed", 3)
            break
        except AssertionError:
            continue
    guest.console.wait_for(r"power button pressed", 1)
    assert guest.proc.wait(timeout=60) == 0
    assert "FATAL" not in guest.console.text
    print(f"\nqcow2 boot: sshd {sshd:.2f}s")

    # Second boot of the same disk: files again, firstboot files not again.
    layer2 = tmp_path / "vm2.cpio"
    write_vm_layer(layer2, files={"/etc/vm-file": b"second\n"},
                   firstboot={"/etc/init.d/S51again": b"#!/bin/sh\necho FIRSTBOOT-AGAIN\n"},
                   modes={"/etc/init.d/S51again": 0o755})  # fmt: skip
    again = boot([f"file={disk},format=qcow2"], "", layer=layer2)
    again.console.wait_for(r"REPORT size=\d+ file=second", BOOT_TIMEOUT)
    assert "FIRSTBOOT-AGAIN" not in again.console.text


def test_overlay_mode_root(boot: Boot, base_image: Path, tmp_path: Path) -> None:
    rw = tmp_path / "rw.ext4"
    subprocess.run(["truncate", "-s", "512M", str(rw)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-L", "ignite-rw", "-J", "size=4", str(rw)], check=True)
    probe = b'#!/bin/sh\necho "OVERLAY $(grep " / " /proc/mounts | cut -d" " -f3)"\n'
    layer = tmp_path / "vm.cpio"
    write_vm_layer(
        layer, files={"/etc/init.d/S50probe": probe}, modes={"/etc/init.d/S50probe": 0o755}
    )
    guest = boot([f"file={base_image},format=raw,readonly=on", f"file={rw},format=raw"],
                 "", cow="overlay", layer=layer)  # fmt: skip
    guest.console.wait_for(r"OVERLAY overlay", BOOT_TIMEOUT)
    assert "FATAL" not in guest.console.text


def test_missing_root_disk_is_fatal_and_powers_off(boot: Boot) -> None:
    # Words with "=" and no "." reach /init as environment variables: a short disk wait.
    guest = boot([], "IGNITE_DISK_WAIT_TENTHS=5")
    guest.console.wait_for(r"ignitevm-init: FATAL no disk labeled ignite-image", BOOT_TIMEOUT)
    assert guest.proc.wait(timeout=60) == 0


NET_PROBE = (
    b"#!/bin/sh\n"
    b"echo \"NET addr=$(ip -4 -o addr show eth0 | awk '{print $4}')"
    b" gw=$(ip route | awk '/^default/{print $3}')"
    b" dns=$(awk '/nameserver/{print $2}' /etc/resolv.conf | head -n1) host=$(hostname)\"\n"
)


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("ip=dhcp", "NET addr=10.0.2.15/24 gw=10.0.2.2 dns=10.0.2.3 host=dhcpvm"),
        (
            "ip=10.0.2.77::10.0.2.2:255.255.255.0:staticvm:eth0:off:10.0.2.3",
            "NET addr=10.0.2.77/24 gw=10.0.2.2 dns=10.0.2.3 host=staticvm",
        ),
    ],
)
def test_network_from_ip_parameter(
    boot: Boot, base_image: Path, tmp_path: Path, ip: str, expected: str
) -> None:
    disk = tmp_path / "disk.qcow2"
    _qcow2(base_image, disk, "1G")
    layer = tmp_path / "vm.cpio"
    write_vm_layer(
        layer, files={"/etc/init.d/S50net": NET_PROBE}, modes={"/etc/init.d/S50net": 0o755}
    )
    guest = boot(
        [f"file={disk},format=qcow2"],
        f"{ip} ignite.hostname=dhcpvm",
        layer=layer,
        user_net=True,
    )
    guest.console.wait_for(r"^NET addr=", BOOT_TIMEOUT)
    line = next(line for _, line in guest.console.lines if line.startswith("NET addr="))
    assert line == expected


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")
def test_default_image_archives_are_deterministic_and_read_by_skopeo(tmp_path: Path) -> None:
    _need("apt-get", "dpkg-deb")
    outputs = {
        "oci-archive": tmp_path / "a.oci.tar",
        "docker-archive": tmp_path / "a.docker.tar",
    }
    for kind, path in outputs.items():
        subprocess.run([sys.executable, str(ROOT / "images/build.py"), "--output",
                        f"{kind}:{path}", "--cache", str(DEB_CACHE)], check=True)  # fmt: skip
        info = json.loads(
            subprocess.run(
                ["skopeo", "inspect", f"{kind}:{path}"], capture_output=True, check=True, timeout=60
            ).stdout
        )
        assert info["Architecture"] == "amd64" and len(info["Layers"]) == 1
    again = tmp_path / "b.oci.tar"
    subprocess.run([sys.executable, str(ROOT / "images/build.py"), "--output",
                    f"oci-archive:{again}", "--cache", str(DEB_CACHE)], check=True)  # fmt: skip
    assert again.read_bytes() == outputs["oci-archive"].read_bytes()


@pytest.mark.slow
def test_debian_variant_boots_systemd_to_sshd(boot: Boot, tmp_path: Path) -> None:
    """images/build.py --variant debian: debootstrap bookworm + systemd + openssh (minutes)."""
    _need("debootstrap")
    rootfs = tmp_path / "rootfs"
    subprocess.run([sys.executable, str(ROOT / "images/build.py"), "--variant", "debian",
                    "--output", f"dir:{rootfs}", "--cache", str(DEB_CACHE)],
                   check=True, timeout=1200)  # fmt: skip
    base = tmp_path / "image.ext4"
    subprocess.run(["truncate", "-s", "1G", base], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-b", "4096", "-d", rootfs, "-E", "root_owner=0:0",
                    "-L", "ignite-image", base], check=True)  # fmt: skip
    shutil.rmtree(rootfs)
    disk = tmp_path / "disk.qcow2"
    _qcow2(base, disk, "2G")
    guest = boot([f"file={disk},format=qcow2"], "ignite.hostname=debvm")
    guest.console.wait_for(r"ignitevm-init: exec /sbin/init", BOOT_TIMEOUT)
    guest.console.wait_for(r"ignitevm-debian: debvm up, sshd started", 180)
    for _ in range(10):  # logind handles the power button once it runs
        guest.powerdown()
        if guest.proc.poll() is not None:
            break
        try:
            guest.proc.wait(timeout=6)
            break
        except subprocess.TimeoutExpired:
            continue
    assert guest.proc.wait(timeout=60) == 0


def test_cli_imported_kernel_boots_cli_imported_image(boot: Boot, tmp_path: Path) -> None:
    """Issue 2's smoke boot: `ignite kernel import deb:` + `ignite image import oci-archive:`,
    then the stored vmlinux + initrd.cpio boot the stored image.ext4 (read-only) under TCG."""

    deb = Path(
        subprocess.run(
            [sys.executable, "-m", "ignitevm.kernel.apt", str(DEB_CACHE)],
            capture_output=True, text=True, check=True, timeout=600,
        ).stdout.strip()
    )  # fmt: skip
    archive = tmp_path / "default.oci.tar"
    subprocess.run([sys.executable, str(ROOT / "images/build.py"), "--output",
                    f"oci-archive:{archive}", "--cache", str(DEB_CACHE)], check=True)  # fmt: skip
    state = tmp_path / "state"
    env = {**os.environ, "IGNITE_STATE_DIR": str(state)}

    def ignite(*args: str) -> str:
        argv = [sys.executable, "-m", "ignitevm.cli", *args]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"ignite {' '.join(args)}: {done.stderr}"
        return done.stdout

    ignite("kernel", "import", f"deb:{deb}")
    ignite("image", "import", f"oci-archive:{archive}")
    (kernel_dir,) = (state / "kernel").iterdir()
    (image_dir,) = (state / "image").iterdir()
    guest = boot(
        [f"file={image_dir / 'image.ext4'},format=raw,readonly=on"],
        "",
        kernel=(kernel_dir / "vmlinux", kernel_dir / "initrd.cpio"),
    )
    guest.console.wait_for(r"ignitevm-init: exec /sbin/init", BOOT_TIMEOUT)
    guest.console.wait_for(r"ignitevm-default: sysinit done", BOOT_TIMEOUT)
    assert "FATAL" not in guest.console.text


def test_modules_disk_gives_the_guest_modprobe(
    boot: Boot, kernel: Kernel, base_image: Path, tmp_path: Path
) -> None:
    """With the ignite-modules disk attached, the image loads modules the initramfs lacks."""
    disk = tmp_path / "disk.qcow2"
    _qcow2(base_image, disk, "1G")
    probe = (
        b"#!/bin/sh\n"
        b"modprobe br_netfilter && grep -q '^br_netfilter ' /proc/modules &&"
        b' echo "MODPROBE ok $(grep -c \'^b[r ]\' /proc/modules)" || echo "MODPROBE failed"\n'
    )
    layer = tmp_path / "vm.cpio"
    write_vm_layer(layer, files={"/etc/init.d/S50mod": probe}, modes={"/etc/init.d/S50mod": 0o755})
    guest = boot(
        [f"file={disk},format=qcow2", f"file={kernel.modules},format=raw,readonly=on"],
        "",
        layer=layer,
    )
    guest.console.wait_for(r"MODPROBE", BOOT_TIMEOUT)
    assert "MODPROBE ok" in guest.console.text, guest.console.text
