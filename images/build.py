#!/usr/bin/env python3
"""Build ignitevm's default VM image (busybox + dropbear) as an OCI archive, without Docker.

    .venv/bin/python images/build.py [--output oci-archive:FILE | docker-archive:FILE]
                                     [--cache DIR] [--tag ignitevm/default:latest]

Packages come from Debian with ``apt-get download`` (cached), are unpacked with ``dpkg-deb -x``
into a temporary root, which gets busybox applet links and init scripts, and is written as one
layer of an OCI image layout (or a ``docker save`` archive). See docs/kernel.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ignitevm import proc
from ignitevm.errors import IgniteError
from ignitevm.oci import write

log = logging.getLogger("images.build")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TAG = "ignitevm/default:latest"
DEBIAN_TAG = "ignitevm/debian:bookworm"
# dropbear-bin and its library closure (apt-cache depends --recurse): the image is self-contained.
PACKAGES = (
    "busybox-static",
    "dropbear-bin",
    "libc6",
    "libcrypt1",
    "libgcc-s1",
    "libgmp10",
    "libtomcrypt1",
    "libtommath1",
    "zlib1g",
)
# Nothing in the image reads these; dropping them keeps the image at a few MB.
PRUNE = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "usr/share/bug",
    "usr/lib/x86_64-linux-gnu/gconv",
    "usr/libexec",
    "usr/bin/dbclient",
    "usr/lib/dropbear",
    "usr/bin/dropbearconvert",
)

INITTAB = """\
# busybox init: see docs/kernel.md (ignitevm default image)
::sysinit:/etc/init.d/rcS
ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100
::respawn:/etc/init.d/sshd
::respawn:/sbin/acpid -f -c /etc/acpi
::ctrlaltdel:/sbin/poweroff
::shutdown:/etc/init.d/rcK
"""

RCS = """\
#!/bin/sh
# System start: mount the API filesystems the initramfs did not hand over, then S* scripts.
# Shell builtins wherever a tool would do: under TCG each fork+exec costs the boot ~30 ms.
MOUNTS=" "
if [ -r /proc/mounts ]; then
    while read -r _dev mp _rest; do MOUNTS="$MOUNTS$mp "; done </proc/mounts
fi
mounted() { case "$MOUNTS" in *" $1 "*) return 0 ;; esac; return 1; }
mounted /proc || mount -t proc proc /proc
mounted /sys || mount -t sysfs sysfs /sys
mounted /dev || mount -t devtmpfs devtmpfs /dev
[ -d /dev/pts ] && [ -d /dev/shm ] || mkdir -p /dev/pts /dev/shm
mounted /dev/pts || mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mounted /dev/shm || mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mounted /run || mount -t tmpfs -o mode=0755 tmpfs /run
mounted /tmp || mount -t tmpfs -o mode=1777 tmpfs /tmp
# The initramfs usually set the hostname and brought lo up already.
HOST= CURRENT=
[ -s /etc/hostname ] && read -r HOST </etc/hostname
read -r CURRENT </proc/sys/kernel/hostname 2>/dev/null
[ -n "$HOST" ] && [ "$HOST" != "$CURRENT" ] && hostname "$HOST"
FLAGS=0
read -r FLAGS </sys/class/net/lo/flags 2>/dev/null
[ $((FLAGS & 1)) -eq 1 ] || ip link set lo up 2>/dev/null
mkdir -p /run/sshd /var/log
for script in /etc/init.d/S[0-9]*; do
    [ -x "$script" ] && "$script" start
done
echo "ignitevm-default: sysinit done, ${HOST:-$CURRENT} up"
"""

RCK = """\
#!/bin/sh
# System stop (busybox init runs this on poweroff/reboot before killing everything).
echo "ignitevm-default: shutting down"
for script in /etc/init.d/K[0-9]*; do
    [ -x "$script" ] && "$script" stop
done
sync
umount -a -r 2>/dev/null
echo "ignitevm-default: filesystems unmounted"
"""

SSHD = """\
#!/bin/sh
# Respawned by init. -R makes host keys at the first connection (persisted in /etc/dropbear),
# -s refuses passwords: log in with a key (ignite run --ssh).
[ -d /etc/dropbear ] || mkdir -p /etc/dropbear
echo "ignitevm-default: sshd (dropbear) listening on port 22" >/dev/console
exec /usr/sbin/dropbear -F -E -R -s -p 22 2>>/var/log/dropbear.log
"""

POWER_BUTTON = """\
#!/bin/sh
# busybox acpid runs this for the ACPI power button (KEY_POWER -> PWRF).
echo "ignitevm-default: power button pressed, powering off" >/dev/console
exec /sbin/poweroff
"""

PROFILE = """\
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PS1='\\u@\\h:\\w\\$ '
"""

FILES: dict[str, tuple[str, int]] = {
    "etc/inittab": (INITTAB, 0o644),
    "etc/init.d/rcS": (RCS, 0o755),
    "etc/init.d/rcK": (RCK, 0o755),
    "etc/init.d/sshd": (SSHD, 0o755),
    "etc/acpi/PWRF/00000080": (POWER_BUTTON, 0o755),
    "etc/profile": (PROFILE, 0o644),
    "etc/passwd": (
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        0o644,
    ),
    # "*": no password matches, so password login is impossible; key login still works.
    "etc/shadow": ("root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n", 0o600),
    "etc/group": ("root:x:0:\ntty:x:5:\nnogroup:x:65534:\n", 0o644),
    "etc/shells": ("/bin/sh\n/bin/ash\n", 0o644),
    "etc/hostname": ("ignitevm\n", 0o644),
    "etc/hosts": ("127.0.0.1\tlocalhost\n::1\t\tlocalhost\n", 0o644),
    "etc/resolv.conf": ("", 0o644),
    "etc/os-release": (
        'NAME="ignitevm default"\nID=ignitevm\n'
        'PRETTY_NAME="ignitevm default (busybox, dropbear)"\n',
        0o644,
    ),
    "etc/securetty": ("ttyS0\nconsole\n", 0o644),
}


def download(cache: Path, packages: tuple[str, ...]) -> list[Path]:
    """``apt-get download`` each package once into ``cache``; return the .deb files."""
    cache.mkdir(parents=True, exist_ok=True)
    missing = [p for p in packages if not list(cache.glob(f"{p}_*.deb"))]
    if missing:
        log.info("downloading %s", " ".join(missing))
        proc.run(["apt-get", "download", "-q", *missing], cwd=cache, hint="run apt-get update")
    debs = []
    for p in packages:
        found = sorted(cache.glob(f"{p}_*.deb"))
        if not found:
            raise IgniteError(f"apt-get download {p} produced no .deb in {cache}")
        debs.append(found[-1])
    return debs


def build_rootfs(root: Path, debs: list[Path]) -> None:
    for deb in debs:
        proc.run(["dpkg-deb", "-x", deb, root])
    for rel in PRUNE:
        target = root / rel
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
    applets = proc.output([root / "bin/busybox", "--list-full"]).split()
    for applet in sorted(set(applets)):
        link = root / applet
        if link.exists() or link.is_symlink():
            continue  # a real program from a package wins over the applet
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")
    for d, mode in (
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("run", 0o755),
        ("tmp", 0o1777),
        ("root", 0o700),
        ("var/log", 0o755),
        ("etc/dropbear", 0o700),
        ("var/lib", 0o755),
        ("home", 0o755),
    ):
        (root / d).mkdir(parents=True, exist_ok=True)
        (root / d).chmod(mode)
    for rel, (text, mode) in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
    (root / "var/run").symlink_to("/run")


def make_rootfs(variant: str, root: Path, cache: Path) -> None:
    if variant == "debian":
        import debian  # images/debian.py, next to this script

        debian.build_rootfs(root, cache / "debootstrap")
    else:
        build_rootfs(root, download(cache, PACKAGES))


def image_config(layer: bytes) -> bytes:
    return write.image_config(
        layer,
        cmd=["/sbin/init"],
        labels={"org.opencontainers.image.title": "ignitevm default image"},
        created_by="images/build.py",
    )


def build(output: str, cache: Path, tag: str, variant: str = "default") -> Path:
    kind, sep, dest = output.partition(":")
    if not sep or kind not in ("oci-archive", "docker-archive", "dir"):
        raise IgniteError(
            f"unsupported output {output!r}",
            hint="use oci-archive:FILE, docker-archive:FILE or dir:DIR",
        )
    if kind == "dir":  # the bare root filesystem (tests make an ext4 of it directly)
        out = Path(dest)
        out.mkdir(parents=True, exist_ok=True)
        make_rootfs(variant, out, cache)
        return out
    with tempfile.TemporaryDirectory(prefix="ignitevm-image-") as tmp:
        root = Path(tmp) / "rootfs"
        root.mkdir()
        make_rootfs(variant, root, cache)
        layer = write.layer_tar(root)
    config = image_config(layer)
    archive = write.oci_archive if kind == "oci-archive" else write.docker_archive
    data = archive(layer, tag, config)
    out = Path(dest)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(out.name + ".tmp")
    tmp_out.write_bytes(data)
    os.replace(tmp_out, out)
    log.info("wrote %s (%d bytes, layer %d bytes)", out, len(data), len(layer))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--output",
        default=None,
        help="oci-archive:FILE (default), docker-archive:FILE or dir:DIR",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=ROOT / "_out/cache/debs",
        help="where downloaded .deb files are kept",
    )
    parser.add_argument("--tag", default=None, help=f"default {DEFAULT_TAG} (debian: {DEBIAN_TAG})")
    parser.add_argument(
        "--variant",
        choices=["default", "debian"],
        default="default",
        help="default: busybox + dropbear; debian: bookworm + systemd + openssh",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        tag = args.tag or (DEBIAN_TAG if args.variant == "debian" else DEFAULT_TAG)
        output = args.output or f"oci-archive:{ROOT / '_out/images' / args.variant}.oci.tar"
        out = build(output, args.cache.resolve(), tag, args.variant)
    except IgniteError as exc:
        print(f"error: {exc}" + (f"\n  hint: {exc.hint}" if exc.hint else ""), file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
