"""What this host offers: the CPU (/proc/cpuinfo), KVM, memory. The one place that reads them.

KVM counts as working only when it is usable hardware virtualization: a nested PVM /dev/kvm
(kvm_pvm loaded, no vmx/svm) opens fine but hangs ordinary guest kernels, so here every VM runs
under QEMU TCG (docs/architecture.md "Platform facts").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
MEMINFO = Path("/proc/meminfo")
DEV_KVM = Path("/dev/kvm")
PVM_MODULE = Path("/sys/module/kvm_pvm")


def cpuinfo_field(name: str, cpuinfo: Path = CPUINFO) -> str | None:
    """The value of the first ``name : value`` line of /proc/cpuinfo, or None."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == name:
            return value.strip()
    return None


def tsc_khz(cpuinfo: Path = CPUINFO) -> int | None:
    """The host CPU clock in kHz from the first "cpu MHz" line, or None."""
    value = cpuinfo_field("cpu MHz", cpuinfo)
    try:
        return round(float(value) * 1000) if value else None
    except ValueError:
        return None


def mem_total_bytes(meminfo: Path = MEMINFO) -> int | None:
    """The host's RAM (MemTotal), or None when /proc/meminfo cannot be read."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass(frozen=True)
class KVMFacts:
    """What the host offers for KVM; read by ``read_kvm_facts``, built by hand in tests."""

    dev_kvm_exists: bool
    dev_kvm_usable: bool  # open for reading and writing by this user
    nested_pvm: bool  # kvm_pvm is loaded: /dev/kvm opens, guests hang
    hw_virt: bool  # vmx or svm in the CPU flags


def read_kvm_facts(
    dev_kvm: Path = DEV_KVM, pvm_module: Path = PVM_MODULE, cpuinfo: Path = CPUINFO
) -> KVMFacts:
    flags = (cpuinfo_field("flags", cpuinfo) or "").split()
    return KVMFacts(
        dev_kvm_exists=dev_kvm.exists(),
        dev_kvm_usable=os.access(dev_kvm, os.R_OK | os.W_OK),
        nested_pvm=pvm_module.exists(),
        hw_virt="vmx" in flags or "svm" in flags,
    )


def kvm_problem(facts: KVMFacts) -> str | None:
    """Why KVM cannot run guests here, or None when it can."""
    if not facts.dev_kvm_exists:
        return "/dev/kvm does not exist (no KVM module loaded, or no hardware virtualization)"
    if not facts.dev_kvm_usable:
        return "/dev/kvm is not readable and writable by this user"
    if facts.nested_pvm:
        return "/dev/kvm is nested PVM (kvm_pvm is loaded): ordinary guest kernels hang under it"
    if not facts.hw_virt:
        return "the CPU offers no hardware virtualization (no vmx/svm flag)"
    return None


def kvm_works(
    dev_kvm: Path = DEV_KVM, pvm_module: Path = PVM_MODULE, cpuinfo: Path = CPUINFO
) -> bool:
    """True when /dev/kvm is usable hardware virtualization."""
    return kvm_problem(read_kvm_facts(dev_kvm, pvm_module, cpuinfo)) is None
