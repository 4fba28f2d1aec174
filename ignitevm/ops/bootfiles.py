"""The files a VM gets at boot: the per-VM initramfs layer (hostname, SSH key, copy-files,
volumes to mount) appended to its kernel's initramfs (docs/internals.md, the guest contract)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ignitevm.api import VM
from ignitevm.api.names import safe_hostname
from ignitevm.fsutil import PRIVATE_MODE, create_file
from ignitevm.layout import VMFiles
from ignitevm.ops.shares import shares_env

if TYPE_CHECKING:
    from ignitevm.vmm.base import Disk

AUTH_KEYS = "/root/.ssh/authorized_keys"


def write_initrd(vm: VM, d: Path, base_initrd: Path) -> Path:
    """``vm_dir/initrd``: the kernel's initramfs with this VM's layer appended (Linux unpacks
    both; the later archive wins)."""
    from ignitevm.kernel import write_vm_layer

    files, firstboot = vm_files(vm, d)
    layer = d / VMFiles.VM_LAYER
    env = {}
    if vm.spec.storage.volumes:
        env["IGNITE_VOLUMES"] = volume_mounts(vm)
    if vm.spec.storage.shares:
        env["IGNITE_SHARES"] = shares_env(vm)
    write_vm_layer(layer, files=files, firstboot=firstboot, env=env, modes={AUTH_KEYS: 0o600})
    out = d / VMFiles.INITRD
    tmp = out.with_name(out.name + ".tmp")
    with create_file(tmp, PRIVATE_MODE) as dst:  # the VM layer's secrets are in it
        for part in (base_initrd, layer):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, dst, 1 << 20)
    os.replace(tmp, out)
    return out


def vm_files(vm: VM, d: Path) -> tuple[dict[str, bytes | Path], dict[str, bytes | Path]]:
    """(files applied at every boot, files applied at first boot) for the per-VM layer."""
    name = safe_hostname(vm.metadata.name)
    files: dict[str, bytes | Path] = {
        "/etc/hostname": f"{name}\n".encode(),
        "/etc/hosts": f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n::1\tlocalhost\n".encode(),
    }
    if vm.spec.ssh is True:
        files[AUTH_KEYS] = (d / VMFiles.SSH_PUBKEY).read_bytes()
    elif isinstance(vm.spec.ssh, str):
        files[AUTH_KEYS] = Path(vm.spec.ssh).read_bytes()
    firstboot: dict[str, bytes | Path] = {}
    for mapping in vm.spec.copy_files:
        host = Path(mapping.host_path)
        if host.is_dir():
            for path in sorted(p for p in host.rglob("*") if p.is_file()):
                rel = path.relative_to(host).as_posix()
                firstboot[f"{mapping.vm_path.rstrip('/')}/{rel}"] = path
        else:
            firstboot[mapping.vm_path] = host
    return files, firstboot


def volume_disks(vm: VM) -> tuple[Disk, ...]:
    """`--volumes`: each host block device (or image file) as a virtio disk with a serial the
    guest's /init finds it by (letters, digits and `_` only: Firecracker's drive ids are the
    serials its guests see)."""
    from ignitevm.vmm.base import Disk

    return tuple(
        Disk(Path(v.block_device.path), "raw", serial=f"ignite_{v.name}")
        for v in vm.spec.storage.volumes
        if v.block_device is not None
    )


def volume_mounts(vm: VM) -> str:
    """IGNITE_VOLUMES for /init: "SERIAL:/mount/path ..." (docs/internals.md)."""
    paths = {m.name: m.mount_path for m in vm.spec.storage.volume_mounts}
    return " ".join(
        f"ignite_{v.name}:{paths[v.name]}" for v in vm.spec.storage.volumes if v.name in paths
    )
