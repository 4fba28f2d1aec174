"""`ignite create`: a VM object and its copy-on-write disk, in O(1) whatever the image size."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from ignitevm import proc
from ignitevm.api import VM, Image, Kernel, Kind, generate_name, new_uid
from ignitevm.api.names import NAME_HINT, check_id_prefix, name_problem
from ignitevm.api.types import OCIImageSource, Vmm
from ignitevm.errors import AlreadyExistsError, ValidationError
from ignitevm.fsutil import restrict
from ignitevm.layout import OBJECT_DIR_MODE, VMFiles
from ignitevm.network.registry import resolve_plugin_name
from ignitevm.ops.images import base_image_path, ensure_image
from ignitevm.ops.kernels import ensure_kernel, kernel_files
from ignitevm.ops.services import DEFAULT_IMAGE, Services
from ignitevm.ops.shares import NO_9P, check_shares
from ignitevm.ops.vmchecks import check_vm_request
from ignitevm.store.scratch import scratch_dir
from ignitevm.vmm.base import VMMName

log = logging.getLogger(__name__)


def create_vm(svc: Services, vm: VM, *, require_name: bool = False) -> VM:
    """Store ``vm`` (its spec as the user asked) with a name, uid, disk and status.

    Everything that can be refused is refused before the store changes (ops/vmchecks.py). The
    VM is built in a scratch directory and renamed into ``vm/<uid>`` under the VM names lock,
    after a last check that its name and uid are free: of two creates of one name exactly one
    succeeds, and a create killed midway leaves only scratch that the next one removes."""
    meta, spec = vm.metadata, vm.spec
    if require_name and not meta.name:
        raise ValidationError("the VM has no name and --require-name is set", hint="add --name")
    if spec.snapshot:
        from ignitevm.ops.restore import prepare_from_snapshot

        prepare_from_snapshot(svc, vm)
    if meta.name:
        _check_name(meta.name)
    _check_request(svc, vm)
    _refuse_taken(svc.store.list(Kind.VM), vm)  # early: no import for a name that is taken
    spec.image.oci = spec.image.oci or DEFAULT_IMAGE
    spec.kernel.oci = spec.kernel.oci or _default_kernel(svc, vm)
    image = ensure_image(svc, spec.image.oci)
    kernel = ensure_kernel(svc, spec.kernel.oci)
    _fill_status(svc, vm, image, kernel)
    generated = not meta.name
    meta.name = meta.name or _free_name(svc.store.list(Kind.VM))
    meta.uid = meta.uid or new_uid()
    with scratch_dir(svc.store.tmp_dir(), "vm") as work:
        staged = work / "object"
        staged.mkdir()
        _make_files(svc, vm, staged, image, kernel)
        # others may read metadata.json, not the disk or the key (the scratch dir kept them
        # out while the files were made)
        restrict(staged, OBJECT_DIR_MODE, VMFiles.PRIVATE)
        with svc.store.names_lock(Kind.VM):
            taken = svc.store.list(Kind.VM)
            if generated and any(v.metadata.name == meta.name for v in taken):
                meta.name = _free_name(taken)  # a concurrent create drew the same words
            _refuse_taken(taken, vm)
            svc.store.add_staged(vm, staged)
    log.info("created VM %s (%s)", meta.name, meta.uid)
    return vm


def _check_request(svc: Services, vm: VM) -> None:
    check_vm_request(vm, svc.store.root)
    check_shares(vm)
    vm.status.id_prefix = check_id_prefix(svc.config.spec.id_prefix)
    # recorded as the plugin that will run (Ignite's docker-bridge: cni, with a warning)
    wanted = vm.status.network.plugin or svc.default_network_plugin()
    vm.status.network.plugin = str(resolve_plugin_name(wanted))
    if vm.spec.network.ports and vm.status.network.plugin == "none":
        raise ValidationError(
            "published ports need a network: this VM's network plugin is none",
            hint="add --network-plugin cni (or user)",
        )


def _refuse_taken(existing: list[VM], vm: VM) -> None:
    name, uid = vm.metadata.name, vm.metadata.uid
    if name and any(v.metadata.name == name for v in existing):
        raise AlreadyExistsError(
            f"a VM named {name!r} already exists",
            hint=f"choose another --name, or remove it: ignite rm {name}",
        )
    if uid and any(v.metadata.uid == uid for v in existing):
        raise AlreadyExistsError(f"a VM with uid {uid} already exists")


def _fill_status(svc: Services, vm: VM, image: Image, kernel: Kernel) -> None:
    vm.metadata.created = datetime.now(UTC)
    vm.status.image = OCIImageSource(
        id=image.status.oci_source.id, size=image.status.oci_source.size
    )
    vm.status.kernel = OCIImageSource(
        id=kernel.status.oci_source.id, size=kernel.status.oci_source.size
    )
    vm.status.running = False


def _make_files(svc: Services, vm: VM, d: Path, image: Image, kernel: Kernel) -> None:
    """The VM's disk (and key) in ``d``; the VMM is chosen once, here, and recorded:
    Firecracker VMs get the overlay mode's raw writable disk instead of a qcow2 overlay."""
    from ignitevm.ops.vmmchoice import cow_mode, create_root_disk, resolve_vmm

    if vm.status.snapshot:  # made from a snapshot: its disk sits on the snapshot's layer
        from ignitevm.ops.restore import disk_and_key_from_snapshot

        disk_and_key_from_snapshot(svc, vm, d)
        return
    choice = resolve_vmm(svc, vm, vmlinux=kernel_files(svc, kernel)[0])
    if vm.spec.storage.shares and choice.vmm == VMMName.FIRECRACKER:
        raise ValidationError(NO_9P, hint="drop --vmm firecracker, or the --share flags")
    vm.status.vmm = Vmm(choice.vmm)
    create_root_disk(vm, d, base_image_path(svc, image), cow_mode(d, choice.vmm))
    if vm.spec.ssh is True:
        generate_ssh_key(d / VMFiles.SSH_KEY, vm.metadata.name)


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


def _free_name(existing: list[VM]) -> str:
    taken = {v.metadata.name for v in existing}
    for _ in range(100):
        name = generate_name()
        if name not in taken:
            return name
    return f"{generate_name()}-{new_uid()[:4]}"


def _check_name(name: str) -> None:
    """Names follow Ignite's rule (api/names.py): the name is the guest's hostname and part
    of its kernel command line, and `ps` prints it."""
    problem = name_problem(name)
    if problem is not None:
        raise ValidationError(
            f"invalid VM name {name!r} (metadata.name): {problem}", hint=NAME_HINT
        )


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
