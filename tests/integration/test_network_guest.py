"""The cni plugin with a real guest: Debian's kernel under QEMU (TCG) on the VM's tap0, busybox
udhcpc against our DHCP responder, pings both ways, the guest fetching from a server on the
"host", and a published port (portmap) reaching busybox httpd in the guest via 127.0.0.1.

The "host" is a namespace the test owns (see test_network_cni.py). Kernel and modules come from
Debian's linux-image package (apt-get download, cached under _out/). One QEMU, with a timeout;
the test waits for other QEMU processes of the team to finish first (2 shared cores).
"""

from __future__ import annotations

import http.server
import lzma
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ignitevm.network import cniconf
from ignitevm.network.base import PortMapping
from ignitevm.network.ports import require_free_ports
from tests.integration.test_network_cni import Env, assert_nothing_left, env, ping

__all__ = ["env"]  # the fixture, re-used

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not Path("/usr/lib/cni/bridge").exists(), reason="no CNI plugins"),
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="no QEMU"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="no busybox-static"),
]

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "_out" / "nettest"
DEB_CACHE = REPO / "_out" / "cache"
MODULES = (  # dependency order (the package has no modules.dep)
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_mmio.ko",
    "net/core/failover.ko",
    "drivers/net/net_failover.ko",
    "drivers/net/virtio_net.ko",
)
HOST_HTTP_PORT = 18080  # inside the test's own host namespace: cannot collide
INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in {modules}; do insmod /lib/modules/$m.ko; done
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -q -n -t 5 -T 1 -s /dhcp.sh >/dev/null 2>&1 || echo "NET-FAIL dhcp"
echo "NET-ADDR $(ip -4 -o addr show eth0 | awk '{{print $4}}')"
gw=$(ip route | sed -n 's/^default via \\([0-9.]*\\).*/\\1/p')
echo "NET-GW $gw"
ping -c 1 -W 3 "$gw" >/dev/null && echo "NET-PING-GW ok"
# not wget: static busybox's wget segfaults in glibc's NSS here; nc with numbers does not
reply=$( (printf 'GET /hello HTTP/1.0\r\n\r\n'; sleep 3) | nc "$gw" {port} | tail -n 1)
echo "NET-FETCH $reply"
mkdir -p /www && echo "hello from the guest" >/www/hello
httpd -p 8080 -h /www
echo NET-READY
sleep 600
"""
DHCP_SCRIPT = """#!/bin/sh
case "$1" in
bound|renew)
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route add default via "$router"
    echo "NET-DHCP ip=$ip/$mask router=$router dns=$dns hostname=$hostname" >/dev/console
    ;;
esac
"""


def _newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    out = bytearray()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + encoded
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def _kernel_deb() -> Path:
    debs = sorted(DEB_CACHE.glob("linux-image-*-amd64_*.deb"))
    if not debs:
        DEB_CACHE.mkdir(parents=True, exist_ok=True)
        depends = subprocess.run(
            ["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True
        ).stdout
        pkg = next(ln.split()[-1] for ln in depends.splitlines() if "Depends: linux-image-" in ln)
        subprocess.run(["apt-get", "download", "-q", pkg], cwd=DEB_CACHE, check=True)
        debs = sorted(DEB_CACHE.glob("linux-image-*-amd64_*.deb"))
    return debs[-1]


def ensure_guest() -> tuple[Path, Path]:
    """(vmlinux, initrd), built once into _out/nettest."""
    vmlinux, initrd, stamp = CACHE / "vmlinux", CACHE / "initrd.cpio", CACHE / "init.stamp"
    init = INIT.format(modules=" ".join(Path(m).stem for m in MODULES), port=HOST_HTTP_PORT)
    if vmlinux.exists() and initrd.exists() and stamp.exists() and stamp.read_text() == init:
        return vmlinux, initrd
    CACHE.mkdir(parents=True, exist_ok=True)
    work = CACHE / "deb"
    shutil.rmtree(work, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", str(_kernel_deb()), str(work)], check=True)
    try:
        if not vmlinux.exists():
            data = next((work / "boot").glob("vmlinuz-*")).read_bytes()
            elf = lzma.LZMADecompressor().decompress(data[data.find(b"\xfd7zXZ\x00") :])
            vmlinux.with_suffix(".tmp").write_bytes(elf)
            vmlinux.with_suffix(".tmp").rename(vmlinux)
        moddir = next((work / "lib" / "modules").iterdir()) / "kernel"
        busybox = shutil.which("busybox")
        assert busybox is not None
        entries = [(d, 0o40755, b"") for d in ("bin", "dev", "proc", "sys", "lib", "lib/modules")]
        entries += [
            ("bin/busybox", 0o100755, Path(busybox).read_bytes()),
            ("init", 0o100755, init.encode()),
            ("dhcp.sh", 0o100755, DHCP_SCRIPT.encode()),
        ]
        entries += [(f"lib/modules/{Path(m).name}", 0o100644, (moddir / m).read_bytes())
                    for m in MODULES]  # fmt: skip
        initrd.with_suffix(".tmp").write_bytes(_newc(entries))
        initrd.with_suffix(".tmp").rename(initrd)
        stamp.write_text(init)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return vmlinux, initrd


def _tsc_khz() -> int:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz"):
            return int(float(line.split(":")[1]) * 1000)
    return 2000000


def _wait_for_other_qemus(limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if subprocess.run(["pgrep", "-f", "qemu-system-x86_64"], capture_output=True).returncode:
            return
        time.sleep(1)


class Console:
    """The guest's serial console, read in a thread; lines are searchable."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.lines: list[str] = []
        self.proc = proc
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self.cond:
                self.lines.append(raw.decode(errors="replace").rstrip())
                self.cond.notify_all()

    def wait_for(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    if line.startswith(prefix):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    tail = "\n".join(self.lines[-30:])
                    raise AssertionError(f"no {prefix!r} on the console:\n{tail}")
                self.cond.wait(left)


@pytest.fixture
def host_http(env: Env) -> Iterator[None]:
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"hello from the host"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = env.in_host(lambda: http.server.HTTPServer(("0.0.0.0", HOST_HTTP_PORT), Hello))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def test_real_guest_gets_dhcp_and_talks_both_ways(env: Env, host_http: None) -> None:
    vmlinux, initrd = ensure_guest()
    plugin = env.plugin()
    host_port = 21000 + secrets.randbelow(4000)
    req = env.request(ports=(PortMapping(host_port, 8080),))
    # what ops/preflight.py checks before a start (the plugin itself checks nothing)
    assert cniconf.missing_requirements(env.conf_dir, [Path("/usr/lib/cni")]) == ()
    env.in_host(lambda: require_free_ports(req.ports))
    att = env.in_host(lambda: plugin.attach(req))
    qemu: subprocess.Popen[bytes] | None = None
    try:
        cmdline = (
            "console=ttyS0 reboot=k panic=1 mitigations=off nowatchdog pci=off audit=0 quiet "
            f"i8042.noaux i8042.nokbd i8042.nopnp 8250.nr_uarts=1 tsc_early_khz={_tsc_khz()}"
        )
        argv = [
            "ip", "netns", "exec", str(att.netns), "timeout", "120", "qemu-system-x86_64",
            "-M", "microvm,acpi=on,pit=off,pic=off,rtc=on", "-accel", "tcg,tb-size=32",
            "-cpu", "max", "-m", "256", "-smp", "1", "-nodefaults", "-no-user-config",
            "-nographic", "-no-reboot", "-kernel", str(vmlinux), "-initrd", str(initrd),
            "-append", cmdline,
            "-netdev", f"tap,id=n0,ifname={att.tap},script=no,downscript=no",
            "-device", f"virtio-net-device,netdev=n0,mac={req.mac}",
            "-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con",
        ]  # fmt: skip
        _wait_for_other_qemus(limit=0)
        started = time.monotonic()
        qemu = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, start_new_session=True
        )
        console = Console(qemu)
        dhcp_line = console.wait_for("NET-DHCP", 90)
        booted = time.monotonic() - started
        assert f"ip={att.ip}/24" in dhcp_line and f"router={att.gateway}" in dhcp_line
        assert f"hostname={req.vm_name}" in dhcp_line
        assert console.wait_for("NET-ADDR", 10) == f"NET-ADDR {att.ip}/24"
        assert console.wait_for("NET-PING-GW", 10) == "NET-PING-GW ok"
        assert console.wait_for("NET-FETCH", 15) == "NET-FETCH hello from the host"
        console.wait_for("NET-READY", 10)
        assert ping(env, str(att.ip)), "host -> guest ping failed"
        url = f"http://127.0.0.1:{host_port}/hello"
        body = env.in_host(lambda: urllib.request.urlopen(url, timeout=10).read())
        assert body == b"hello from the guest\n"
        print(f"boot to DHCP lease: {booted:.1f} s")
    finally:
        if qemu is not None:
            os.killpg(qemu.pid, signal.SIGKILL)
            qemu.wait()
            print("\n".join(console.lines))
        env.in_host(lambda: plugin.detach(req))
    assert_nothing_left(env, [req])
