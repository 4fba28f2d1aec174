"""`ignite create`: a VM object and its copy-on-write disk, in O(1) whatever the image size."""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

from ignitevm import proc
from ignitevm.api import VM, Kind, generate_name, new_uid
from ignitevm.api.settings import MIN_MEMORY_MIB
from ignitevm.api.types import OCIImageSource, Vmm
from ignitevm.errors import ConflictError, NotFoundError, ValidationError
from ignitevm.layout import VMFiles
from ignitevm.ops.images import base_image_path, ensure_image
from ignitevm.ops.kernels import ensure_kernel, kernel_files
from ignitevm.ops.services import DEFAULT_IMAGE, Services
from ignitevm.ops.shares import NO_9P, check_shares
from ignitevm.vmm.base import VMMName

log = logging.getLogger(__name__)


def create_vm(svc: Services, vm: VM, *, require_name: bool = False) -> VM:
    """Store ``vm`` (its spec as the user asked) with a name, uid, disk and status."""
    meta, spec = vm.metadata, vm.spec
    if require_name and not meta.name:
        raise ValidationError("the VM has no name and --require-name is set", hint="add --name")
    _check_spec(vm)
    meta.name = meta.name or _free_name(svc)
    _check_name(meta.name)
    if any(v.metadata.name == meta.name for v in svc.store.list(Kind.VM)):
        raise ConflictError(
            f"a VM named {meta.name!r} already exists",
            hint=f"choose another --name, or remove it: ignite rm {meta.name}",
        )
    meta.uid = meta.uid or new_uid()
    if svc.store.exists(Kind.VM, meta.uid):
        raise ConflictError(f"a VM with uid {meta.uid} already exists")
    spec.image.oci = spec.image.oci or DEFAULT_IMAGE
    spec.kernel.oci = spec.kernel.oci or _default_kernel(svc, vm)
    image = ensure_image(svc, spec.image.oci)
    kernel = ensure_kernel(svc, spec.kernel.oci)
    meta.created = datetime.now(UTC)
    vm.status.image = OCIImageSource(
        id=image.status.oci_source.id, size=image.status.oci_source.size
    )
    vm.status.kernel = OCIImageSource(
        id=kernel.status.oci_source.id, size=kernel.status.oci_source.size
    )
    vm.status.id_prefix = svc.config.spec.id_prefix
    vm.status.running = False
    if not vm.status.network.plugin:
        vm.status.network.plugin = svc.default_network_plugin()
    if spec.network.ports and vm.status.network.plugin == "none":
        raise ValidationError(
            "published ports need a network: this VM's network plugin is none",
            hint="add --network-plugin cni (or user)",
        )
    vm_dir = svc.store.object_dir(Kind.VM, meta.uid)
    vm_dir.mkdir(parents=True)
    try:
        from ignitevm.ops.vmmchoice import cow_mode, create_root_disk, resolve_vmm

        # chosen once, here, and recorded: Firecracker VMs get the overlay mode's raw
        # writable disk instead of a qcow2 overlay
        choice = resolve_vmm(svc, vm, vmlinux=kernel_files(svc, kernel)[0])
        if spec.storage.shares and choice.vmm == VMMName.FIRECRACKER:
            raise ValidationError(NO_9P, hint="drop --vmm firecracker, or the --share flags")
        vm.status.vmm = Vmm(choice.vmm)
        create_root_disk(vm, vm_dir, base_image_path(svc, image), cow_mode(vm_dir, choice.vmm))
        if spec.ssh is True:
            generate_ssh_key(vm_dir / VMFiles.SSH_KEY, meta.name)
        svc.store.save(vm)
    except BaseException:
        shutil.rmtree(vm_dir, ignore_errors=True)
        raise
    log.info("created VM %s (%s)", meta.name, meta.uid)
    return vm


def _default_kernel(svc: Services, vm: VM) -> str:
    """The configured default kernel; for a VM that asks for Firecracker, the newest kernel
    built by `ignite kernel build` (Debian's kernel cannot see Firecracker's devices)."""
    from ignitevm.ops.kernel_build import NAME_PREFIX
    from ignitevm.ops.vmmchoice import requested_vmm

    if requested_vmm(svc, vm)[0] != "firecracker":
        return svc.default_kernel_source()
    built = [k for k in svc.store.list(Kind.KERNEL) if k.metadata.name.startswith(NAME_PREFIX)]
    if not built:
        raise ValidationError(
            "Firecracker needs a kernel with virtio-mmio command-line devices, and none is built",
            hint="build one with `ignite kernel build` (or pass -k KERNEL)",
        )
    newest = max(built, key=lambda k: k.metadata.created or datetime.min.replace(tzinfo=UTC))
    return newest.metadata.name


def _free_name(svc: Services) -> str:
    taken = {v.metadata.name for v in svc.store.list(Kind.VM)}
    for _ in range(100):
        name = generate_name()
        if name not in taken:
            return name
    return f"{generate_name()}_{new_uid()[:4]}"


def _check_name(name: str) -> None:
    if (
        not name
        or "/" in name
        or name.startswith(".")
        or len(name) > 63
        or any(c.isspace() for c in name)
    ):
        raise ValidationError(
            f"invalid VM name {name!r}",
            hint="use up to 63 letters, digits, '-', '_' or '.', not starting with '.'",
        )


def _check_spec(vm: VM) -> None:
    spec = vm.spec
    if spec.memory.mib() < MIN_MEMORY_MIB:
        raise ValidationError(
            f"memory {spec.memory} is too little to boot a VM",
            hint=f"use --memory {MIN_MEMORY_MIB}MB or more",
        )
    if isinstance(spec.ssh, str):
        key = Path(spec.ssh)
        if not key.is_file():
            raise NotFoundError(
                f"SSH public key {key} does not exist", hint="pass --ssh=PATH.pub of a key you have"
            )
    for mapping in spec.copy_files:
        host, target = Path(mapping.host_path), mapping.vm_path
        if not host.is_absolute() or not target.startswith("/"):
            raise ValidationError(
                f"copy-files {mapping.host_path}:{target}: both paths must be absolute",
                hint="for example: --copy-files /etc/motd:/etc/motd",
            )
        if not host.exists():
            raise NotFoundError(f"copy-files: {host} does not exist")
    check_shares(vm)


def generate_ssh_key(path: Path, comment: str) -> None:
    proc.run(
        [
            proc.require_tool("ssh-keygen"),
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            f"ignite-{comment}",
            "-f",
            str(path),
        ]
    )
