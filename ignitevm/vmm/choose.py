"""Which VMM runs a VM, and why: Firecracker where hardware KVM works and its binary is found,
else QEMU with KVM, else QEMU TCG (DESIGN.md "Providers")."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ignitevm.vmm.base import Accel, VMMName

AUTO = "auto"


@dataclass(frozen=True)
class KVMFacts:
    """What the host offers; read by ``read_kvm_facts``, built by hand in tests."""

    dev_kvm_exists: bool
    dev_kvm_usable: bool  # open for reading and writing by this user
    nested_pvm: bool  # kvm_pvm is loaded: /dev/kvm opens, guests hang
    hw_virt: bool  # vmx or svm in the CPU flags


def read_kvm_facts(
    dev_kvm: Path = Path("/dev/kvm"),
    pvm_module: Path = Path("/sys/module/kvm_pvm"),
    cpuinfo: Path = Path("/proc/cpuinfo"),
) -> KVMFacts:
    flags: list[str] = []
    try:
        for line in cpuinfo.read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == "flags":
                flags = value.split()
                break
    except OSError:
        pass
    return KVMFacts(
        dev_kvm_exists=dev_kvm.exists(),
        dev_kvm_usable=os.access(dev_kvm, os.R_OK | os.W_OK),
        nested_pvm=pvm_module.exists(),
        hw_virt="vmx" in flags or "svm" in flags,
    )


def kvm_problem(facts: KVMFacts) -> str | None:
    """Why KVM cannot run guests here, or None when it can (same rule as ``kvm_works``)."""
    if not facts.dev_kvm_exists:
        return "/dev/kvm does not exist (no KVM module loaded, or no hardware virtualization)"
    if not facts.dev_kvm_usable:
        return "/dev/kvm is not readable and writable by this user"
    if facts.nested_pvm:
        return "/dev/kvm is nested PVM (kvm_pvm is loaded): ordinary guest kernels hang under it"
    if not facts.hw_virt:
        return "the CPU offers no hardware virtualization (no vmx/svm flag)"
    return None


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
