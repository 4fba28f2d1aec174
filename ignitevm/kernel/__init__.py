"""Kernels: Debian packages or OCI kernel images -> ELF vmlinux + initramfs; the guest's /init."""

from ignitevm.kernel.cmdline import kernel_cmdline
from ignitevm.kernel.cpio import CpioEntry, CpioWriter, read_cpio
from ignitevm.kernel.initramfs import build_initramfs, init_script, write_vm_layer
from ignitevm.kernel.modules import resolve_modules
from ignitevm.kernel.modules_disk import MODULES_LABEL, build_modules_image
from ignitevm.kernel.source import FoundKernel, extract_deb, find_kernel_in_rootfs
from ignitevm.kernel.vmlinux import detect_version, to_vmlinux

__all__ = [
    "MODULES_LABEL",
    "CpioEntry",
    "CpioWriter",
    "FoundKernel",
    "build_initramfs",
    "build_modules_image",
    "detect_version",
    "extract_deb",
    "find_kernel_in_rootfs",
    "init_script",
    "kernel_cmdline",
    "read_cpio",
    "resolve_modules",
    "to_vmlinux",
    "write_vm_layer",
]
