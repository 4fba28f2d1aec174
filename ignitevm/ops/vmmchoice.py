"""Which VMM a VM runs on (``--vmm`` > the VM's spec.vmm > the configuration's spec.vmm > auto)
and the copy-on-write disks that go with it: Firecracker takes raw disks only, so its VMs use
the ``overlay`` mode (the image's base read-only + a sparse writable ext4 ``rw.ext4``).

The choice is made once, at create, and recorded in ``status.vmm``; a start keeps it unless
``ignite start --vmm`` asks for another (docs/firecracker.md)."""

from __future__ import annotations

import logging
from pathlib import Path

from ignitevm import proc
from ignitevm.api import VM, Kind
from ignitevm.hostinfo import KVMFacts, kvm_problem, read_kvm_facts
from ignitevm.layout import VMFiles
from ignitevm.ops.images import base_image_path
from ignitevm.ops.refs import require_of_vm
from ignitevm.ops.services import Services
from ignitevm.vmm.base import Disk, VMMName
from ignitevm.vmm.choose import AUTO, VMMChoice, choose_vmm

log = logging.getLogger(__name__)

RW_LABEL = "ignite-rw"
COW_QCOW2 = "qcow2"
COW_OVERLAY = "overlay"


def requested_vmm(svc: Services, vm: VM, override: str | None = None) -> tuple[str, str]:
    """(auto|qemu|firecracker, where that came from)."""
    for value, source in (
        (override, "--vmm"),
        (vm.spec.vmm, "the VM's spec.vmm"),
        (svc.config.spec.vmm, "the configuration's spec.vmm"),
    ):
        if value:
            return str(value), source
    return AUTO, "the default"


def resolve_vmm(
    svc: Services,
    vm: VM,
    override: str | None = None,
    *,
    vmlinux: Path | None = None,
    facts: KVMFacts | None = None,
    firecracker: str | bool | None = True,
) -> VMMChoice:
    """The VMM and accelerator for ``vm``, the reasoning logged at debug level. ``vmlinux``:
    auto does not pick Firecracker for a kernel that cannot see its devices.
    ``facts``/``firecracker`` (the binary, None: absent) replace host detection in tests."""
    from ignitevm.ops.preflight import kernel_has_mmio_cmdline

    requested, source = requested_vmm(svc, vm, override)
    if requested == AUTO and vm.spec.storage.shares:
        # host directories are 9p devices, which only QEMU offers
        requested, source = VMMName.QEMU, f"{source} (auto; the VM shares host directories)"
    binary = proc.find_tool("firecracker") if firecracker is True else firecracker or None
    facts = facts or read_kvm_facts()
    fits = None
    if requested == AUTO and vmlinux is not None and binary and kvm_problem(facts) is None:
        fits = kernel_has_mmio_cmdline(vmlinux)
    choice = choose_vmm(requested, facts, binary, fits)
    log.debug("VMM for %s: %s with %s (%s from %s; %s)", vm.metadata.name, choice.vmm,
              choice.accel, requested, source, choice.reason)  # fmt: skip
    return choice


def vmm_for_start(svc: Services, vm: VM, override: str | None, vmlinux: Path) -> VMMChoice:
    """The VMM recorded at create (its accelerator read from the host now), or the one
    ``--vmm`` asks for; VMs created before the choice was recorded are resolved here."""
    if override or vm.status.vmm is None:
        return resolve_vmm(svc, vm, override, vmlinux=vmlinux)
    return choose_vmm(str(vm.status.vmm), read_kvm_facts(), None)


def cow_mode(d: Path, vmm: str) -> str:
    """``overlay`` for Firecracker and for any VM whose disk was made in that mode; else qcow2."""
    if vmm == VMMName.FIRECRACKER or (
        (d / VMFiles.RW).exists() and not (d / VMFiles.DISK).exists()
    ):
        return COW_OVERLAY
    return COW_QCOW2


def create_root_disk(vm: VM, d: Path, base: Path, mode: str) -> None:
    """The VM's copy-on-write disk, in O(1) whatever the image size."""
    from ignitevm.disk.cow import create_qcow2_overlay, create_sparse_ext4

    size = vm.spec.disk_size.bytes
    if mode == COW_OVERLAY:
        create_sparse_ext4(d / VMFiles.RW, size, RW_LABEL)
    else:
        create_qcow2_overlay(base, d / VMFiles.DISK, size)


def ensure_root_disk(svc: Services, vm: VM, d: Path, mode: str) -> None:
    """Make the writable disk ``mode`` needs when it is missing: a VM created for QEMU and
    started with --vmm firecracker gets a new empty ``rw.ext4`` (its qcow2 writes are not seen)."""
    if mode != COW_OVERLAY or (d / VMFiles.RW).exists():
        return
    if (d / VMFiles.DISK).exists():
        log.warning(
            "VM %s was created with a qcow2 disk; Firecracker gets a new empty writable layer "
            "(%s) and does not see what was written to %s",
            vm.metadata.name, VMFiles.RW, VMFiles.DISK,
        )  # fmt: skip
    create_root_disk(vm, d, base_image_path(svc, require_of_vm(svc, Kind.IMAGE, vm)), COW_OVERLAY)


def root_disks(svc: Services, vm: VM, d: Path, mode: str) -> tuple[Disk, ...]:
    """The disks the root is assembled from (they exist: ``ensure_root_disk``)."""
    base = base_image_path(svc, require_of_vm(svc, Kind.IMAGE, vm))
    if mode == COW_QCOW2:
        from ignitevm.ops.snapshots import layers_under

        return (Disk(d / VMFiles.DISK, "qcow2", backing=(*layers_under(svc, vm), base)),)
    return (Disk(base, "raw", readonly=True), Disk(d / VMFiles.RW, "raw"))
