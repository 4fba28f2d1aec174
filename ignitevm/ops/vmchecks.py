"""What `ignite create` checks before it stores anything (docs/api.md "VM settings").

A VM that cannot start should not be created: every check here runs before the image is
imported and before any directory is made, whether the values came from flags, a ``--config``
manifest, ignited or the library. Each refusal is one ``IgniteError`` that names the flag and
the manifest field, and says what to do.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
from pathlib import Path, PurePosixPath

from ignitevm.api import VM, PortMapping
from ignitevm.api.settings import MIN_MEMORY_MIB, require_setting
from ignitevm.errors import NotFoundError, ValidationError
from ignitevm.hostinfo import mem_total_bytes


def check_vm_request(vm: VM, state_dir: Path) -> None:
    """Refuse what cannot work on this host; ``state_dir`` holds the VM's disk."""
    _check_memory(vm)
    _check_disk_size(vm, state_dir)
    _check_ssh_key(vm)
    _check_copy_files(vm)
    _check_ports(vm.spec.network.ports)
    _check_volumes(vm)


def _name(setting: str, field: str) -> str:
    """How a refusal names a value: its flag and its manifest field."""
    return f"{require_setting(setting).flag} ({field})"


def _human(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n // 2**20} MB"


def _check_memory(vm: VM) -> None:
    memory = vm.spec.memory
    what = _name("memory", "spec.memory")
    if memory.mib() < MIN_MEMORY_MIB:
        raise ValidationError(
            f"{what} {memory}: too little memory to boot a VM",
            hint=f"use --memory {MIN_MEMORY_MIB}MB or more",
        )
    total = mem_total_bytes()
    if total is not None and memory.bytes > total:
        raise ValidationError(
            f"{what} {memory}: more than this host's memory ({_human(total)})",
            hint=f"use --memory {total // 2**20 // 2}MB or less",
        )


def _check_disk_size(vm: VM, state_dir: Path) -> None:
    """The disk is sparse (qcow2, or a sparse ext4), so it may exceed the free space; it may not
    exceed the whole filesystem that holds it: the guest could never fill it, and a size past
    the filesystem's largest file fails later, in qemu-img or truncate, without a hint."""
    size = vm.spec.disk_size.bytes
    where = _existing_parent(state_dir)
    st = os.statvfs(where)
    total = st.f_blocks * st.f_frsize
    if size > total:
        raise ValidationError(
            f"{_name('disk_size', 'spec.diskSize')} {vm.spec.disk_size}: more than the whole "
            f"filesystem of the state directory {state_dir} ({_human(total)})",
            hint=f"use --size {_human(min(total, st.f_bavail * st.f_frsize)).replace(' ', '')} "
            "or less, or put the state directory (IGNITE_STATE_DIR) on a larger filesystem",
        )


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_ssh_key(vm: VM) -> None:
    if isinstance(vm.spec.ssh, str) and not Path(vm.spec.ssh).is_file():
        raise NotFoundError(
            f"{_name('ssh', 'spec.ssh')}: the SSH public key {vm.spec.ssh} does not exist",
            hint="pass --ssh=PATH.pub of a key you have, or --ssh to generate one",
        )


def _check_copy_files(vm: VM) -> None:
    for i, mapping in enumerate(vm.spec.copy_files):
        host, target = Path(mapping.host_path), mapping.vm_path
        what = f"{_name('copy_files', f'spec.copyFiles[{i}]')} {mapping.host_path}:{target}"
        if not host.is_absolute() or not target.startswith("/"):
            raise ValidationError(
                f"{what}: both paths must be absolute",
                hint="for example: --copy-files /etc/motd:/etc/motd",
            )
        if ".." in PurePosixPath(target).parts:
            # /init copies as root inside the guest: the path must say where it lands
            raise ValidationError(
                f"{what}: '..' is not allowed in the VM path",
                hint="give the VM path without '..', e.g. /etc/motd",
            )
        if not host.exists():
            raise NotFoundError(
                f"{what}: {host} does not exist on this host",
                hint="check the host path (it is read when the VM starts)",
            )


def _check_ports(ports: list[PortMapping]) -> None:
    seen: list[tuple[str, int, str]] = []
    for pm in ports:
        what = f"{_name('ports', 'spec.network.ports')} {pm}"
        address = pm.bind_address or "0.0.0.0"
        _check_host_address(what, address)
        proto = str(pm.protocol)
        for other_ip, other_port, other_proto in seen:
            wildcard = {"0.0.0.0", "::"} & {address, other_ip}
            if (other_port, other_proto) == (pm.host_port, proto) and (
                wildcard or other_ip == address
            ):
                raise ValidationError(
                    f"{what}: host port {pm.host_port}/{proto} is published twice",
                    hint="publish each host port once (-p HOST:VM); use another host port",
                )
        seen.append((address, pm.host_port, proto))


def _check_host_address(what: str, address: str) -> None:
    """The address a port is published on must be one of this host's: a forward bound to an
    address that is not here never answers (user networking fails at start, cni's DNAT rule
    matches nothing)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise ValidationError(
            f"{what}: {address!r} is not an IP address", hint="for example: -p 127.0.0.1:8080:80"
        ) from None
    if ip.is_unspecified:
        return
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, 0))  # port 0: no privilege needed, nothing kept
        except OSError:
            raise ValidationError(
                f"{what}: {address} is not an address of this host",
                hint="publish on one of this host's addresses (see `ip -br addr`), or leave "
                "the address out for all of them",
            ) from None


def _check_volumes(vm: VM) -> None:
    for i, volume in enumerate(vm.spec.storage.volumes):
        if volume.block_device is None:
            continue
        path = Path(volume.block_device.path)
        what = f"{_name('volumes', f'spec.storage.volumes[{i}]')} {path}"
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise NotFoundError(
                f"{what}: {path} does not exist on this host",
                hint="a volume is a block device or an image file, e.g. -v /dev/loop0:/mnt",
            ) from None
        if not (stat.S_ISBLK(mode) or stat.S_ISREG(mode)):
            kind = "a directory" if stat.S_ISDIR(mode) else "neither a block device nor a file"
            raise ValidationError(
                f"{what}: {path} is {kind}; a volume is a disk the VM mounts",
                hint="give a block device or an image file (mkfs.ext4 IMAGE), or copy a "
                "directory in with --copy-files",
            )
