"""Which VMM runs a VM, and why: Firecracker where hardware KVM works and its binary is found,
else QEMU with KVM, else QEMU TCG (docs/firecracker.md)."""

from __future__ import annotations

from dataclasses import dataclass

from ignitevm.hostinfo import KVMFacts, kvm_problem
from ignitevm.vmm.base import Accel, VMMName

AUTO = "auto"


@dataclass(frozen=True)
class VMMChoice:
    vmm: VMMName
    accel: Accel
    reason: str


def choose_vmm(
    requested: str, facts: KVMFacts, firecracker: str | None, kernel_fits: bool | None = None
) -> VMMChoice:
    """``requested`` is auto|qemu|firecracker; ``firecracker`` the binary found, or None;
    ``kernel_fits``: whether the kernel has virtio-mmio command-line devices (None: unknown).
    An explicit choice is kept even when it cannot work: preflight says why."""
    problem = kvm_problem(facts)
    if requested == VMMName.FIRECRACKER:
        return VMMChoice(VMMName.FIRECRACKER, Accel.KVM, "firecracker was asked for")
    if requested == VMMName.QEMU:
        accel = Accel.TCG if problem else Accel.KVM
        why = f"TCG: {problem}" if problem else "KVM works"
        return VMMChoice(VMMName.QEMU, accel, f"qemu was asked for; {why}")
    if requested != AUTO:
        raise ValueError(f"unknown VMM {requested!r}")
    if problem is not None:
        return VMMChoice(
            VMMName.QEMU,
            Accel.TCG,
            f"auto: qemu with TCG because {problem}; firecracker needs hardware KVM",
        )
    if firecracker is None:
        return VMMChoice(
            VMMName.QEMU, Accel.KVM, "auto: qemu with KVM: KVM works but no firecracker on PATH"
        )
    if kernel_fits is False:
        return VMMChoice(
            VMMName.QEMU,
            Accel.KVM,
            "auto: qemu with KVM: the kernel lacks virtio-mmio command-line devices, "
            "so it could not see Firecracker's disks",
        )
    return VMMChoice(
        VMMName.FIRECRACKER, Accel.KVM, f"auto: firecracker ({firecracker}): KVM works"
    )
