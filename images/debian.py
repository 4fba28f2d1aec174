"""The fuller image: Debian bookworm with systemd and openssh-server, via debootstrap.

Like Ignite's ubuntu image: a real distribution init, a serial getty on the console (systemd's
getty generator reads console=ttyS0), sshd with host keys made at first boot, logind handling the
ACPI power button, networking left as /init configured it.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ignitevm import proc

log = logging.getLogger("images.debian")

MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
INCLUDE = (
    "systemd-sysv",
    "udev",
    "dbus",
    "openssh-server",
    "iproute2",
    "iputils-ping",
    "procps",
    "less",
    "ca-certificates",
    "e2fsprogs",
)

SSHD_CONF = "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
# Host keys must differ per VM: they are made at the first boot, not baked into the image.
SSH_KEYGEN_DROPIN = """\
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
"""
BOOT_MARKER_UNIT = """\
[Unit]
Description=Print that ignitevm's debian image is up
After=ssh.service
Wants=ssh.service

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "ignitevm-debian: $(hostname) up, sshd started" >/dev/console'

[Install]
WantedBy=multi-user.target
"""


def build_rootfs(root: Path, cache: Path, mirror: str = MIRROR) -> None:
    """debootstrap bookworm (minbase + INCLUDE) into ``root`` and make it an ignitevm image."""
    debootstrap = proc.require_tool("debootstrap")
    cache.mkdir(parents=True, exist_ok=True)
    log.info("debootstrap %s into %s (a few minutes)", SUITE, root)
    proc.run(
        [
            debootstrap,
            "--variant=minbase",
            f"--include={','.join(INCLUDE)}",
            f"--cache-dir={cache.resolve()}",
            SUITE,
            root,
            mirror,
        ],
        capture=True,
        hint="debootstrap needs root and network access to the Debian mirror",
    )
    configure(root)


def _write(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(text)
    path.chmod(mode)


def configure(root: Path) -> None:
    _write(root, "etc/hostname", "ignitevm\n")
    _write(root, "etc/hosts", "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n")
    _write(root, "etc/fstab", "# the root is mounted by the ignitevm initramfs\n")
    _write(root, "etc/ssh/sshd_config.d/ignitevm.conf", SSHD_CONF)
    _write(root, "etc/systemd/system/ssh.service.d/ignitevm-keygen.conf", SSH_KEYGEN_DROPIN)
    _write(root, "etc/systemd/system/ignitevm-ready.service", BOOT_MARKER_UNIT)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "ignitevm-ready.service"
    if not link.is_symlink():
        link.symlink_to("/etc/systemd/system/ignitevm-ready.service")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    # An empty machine-id makes systemd generate a unique one at first boot.
    _write(root, "etc/machine-id", "")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    # Root stays locked ("*"): keys only, via the per-VM files.
    shadow = root / "etc/shadow"
    lines = shadow.read_text().splitlines()
    lines = [
        ":".join(["root", "*", *ln.split(":")[2:]]) if ln.startswith("root:") else ln
        for ln in lines
    ]
    shadow.write_text("\n".join(lines) + "\n")
    # The VM's /dev is devtmpfs; apt's caches are dead weight.
    for d in ("dev", "var/cache/apt/archives", "var/lib/apt/lists"):
        target = root / d
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    for rel in ("var/log/bootstrap.log", "var/cache/debconf/templates.dat-old"):
        (root / rel).unlink(missing_ok=True)
