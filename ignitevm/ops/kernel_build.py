"""Use case: `ignite kernel build` — build a microVM kernel, store it, optionally export it."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ignitevm.api import Kernel, Kind
from ignitevm.errors import ValidationError
from ignitevm.kernel.source import FoundKernel
from ignitevm.layout import KernelFiles
from ignitevm.ops.kernels import kernel_files, store_kernel
from ignitevm.ops.services import Services
from ignitevm.store.scratch import scratch_dir

log = logging.getLogger(__name__)

NAME_PREFIX = "ignitevm/kernel"
FLAVOUR = "microvm"
OUTPUT_KINDS = ("oci-archive", "docker-archive")


@dataclass(frozen=True)
class KernelBuildOutcome:
    kernel: Kernel
    built: bool  # False: an earlier build (stored kernel or finished build dir) was reused
    seconds: float
    dropped: tuple[str, ...]  # fragment options the final config did not keep
    archive: Path | None


def kernel_name(version: str) -> str:
    """``ignitevm/kernel:<version>-microvm`` (the fragment's LOCALVERSION already says it)."""
    tag = version if version.endswith(f"-{FLAVOUR}") else f"{version}-{FLAVOUR}"
    return f"{NAME_PREFIX}:{tag}"


def parse_output(output: str) -> tuple[str, Path]:
    kind, sep, dest = output.partition(":")
    if not sep or kind not in OUTPUT_KINDS or not dest:
        raise ValidationError(
            f"unsupported output {output!r}",
            hint="use oci-archive:FILE or docker-archive:FILE",
        )
    return kind, Path(dest)


def default_workdir(svc: Services) -> Path:
    """Kept between builds: the unpacked source and object tree make a rebuild incremental."""
    return svc.store.tmp_dir() / "kernel-build"


def build_microvm_kernel(
    svc: Services,
    *,
    source: Path | None = None,
    workdir: Path | None = None,
    fragment: Path | None = None,
    name: str | None = None,
    output: str | None = None,
    jobs: int | None = None,
    niceness: int = 10,
) -> KernelBuildOutcome:
    """Build the kernel (or reuse the stored one for the same source + config), store it
    with its initramfs, and export it as an OCI kernel image when ``output`` is given."""
    from ignitevm.kernel import build as kb

    parsed = parse_output(output) if output else None
    src = kb.require_source(source)
    text = fragment.read_text() if fragment is not None else kb.fragment_text()
    key = kb.build_key(kb.source_key(src), text)
    digest = f"sha256:{key}"
    kernel = svc.store.find(Kind.KERNEL, key[:16])
    built, seconds = False, 0.0
    dropped: tuple[str, ...] = ()
    if kernel is None or not kernel_files(svc, kernel)[0].is_file():
        work = (workdir or default_workdir(svc)).resolve()
        result = kb.build_kernel(src, work, fragment=text, jobs=jobs, niceness=niceness)
        built, seconds = not result.reused, result.seconds
        dropped = tuple(str(d) for d in result.dropped)
        files = FoundKernel(vmlinux=result.vmlinux, version=result.version, modules_dir=None)
        wanted = name or kernel_name(result.version)
        _take_name(svc, wanted, key[:16])
        with scratch_dir(svc.store.tmp_dir(), "kernel") as staging:
            _stage_config(result.vmlinux.with_name(KernelFiles.CONFIG), staging, result.version)
            kernel = store_kernel(svc, files, digest, wanted, f"build:{src}", staging)
    else:
        log.info("kernel %s (%s) is already built", kernel.metadata.name, kernel.metadata.uid)
    archive = None
    if parsed is not None:
        archive = export_kernel(svc, kernel, parsed[0], parsed[1])
    return KernelBuildOutcome(kernel, built, seconds, dropped, archive)


def _stage_config(config: Path, staging: Path, version: str) -> None:
    """Where store_kernel keeps a kernel's config from (``rootfs/boot/config-<version>``):
    stored as ``kernel/<uid>/config``, preflight reads it (virtio-mmio command-line devices)."""
    if config.is_file():
        boot = staging / "rootfs" / "boot"
        boot.mkdir(parents=True)
        shutil.copyfile(config, boot / f"config-{version}")


def _take_name(svc: Services, name: str, uid: str) -> None:
    """Like a tag, the name moves to the newest build: an older build of another config keeps
    its files (VMs refer to kernels by digest) under ``<name>-<uid prefix>``."""
    for other in svc.store.list(Kind.KERNEL):
        if other.metadata.name == name and other.metadata.uid != uid:
            other.metadata.name = f"{name}-{other.metadata.uid[:8]}"
            svc.store.save(other)
            log.info("kernel %s renamed to %s", other.metadata.uid, other.metadata.name)


def export_kernel(svc: Services, kernel: Kernel, kind: str, dest: Path) -> Path:
    """Ignite's kernel image convention: ``/boot/vmlinux`` (+ ``/boot/config-<version>``), no
    ``/lib/modules`` (everything is built in)."""
    from ignitevm.oci import write

    vmlinux, _ = kernel_files(svc, kernel)
    kconfig = vmlinux.with_name(KernelFiles.CONFIG)
    with scratch_dir(svc.store.tmp_dir(), "kernel") as tmp:
        boot = tmp / "rootfs" / "boot"
        boot.mkdir(parents=True)
        shutil.copyfile(vmlinux, boot / "vmlinux")
        if kconfig.is_file():  # as distributions ship it; `kernel import` keeps it
            shutil.copyfile(kconfig, boot / f"config-{kernel.status.version}")
        for path in boot.iterdir():
            os.chmod(path, 0o644)
        layer = write.layer_tar(boot.parent)
    tag = kernel.metadata.name if ":" in kernel.metadata.name else kernel.metadata.name + ":latest"
    config = write.image_config(
        layer,
        labels={
            "org.opencontainers.image.title": "ignitevm microVM kernel",
            "org.opencontainers.image.version": kernel.status.version,
        },
        created_by="ignite kernel build",
    )
    archive = write.oci_archive if kind == "oci-archive" else write.docker_archive
    data = archive(layer, tag, config)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = dest.with_name(dest.name + ".tmp")
    tmp_out.write_bytes(data)
    os.replace(tmp_out, dest)
    log.info("wrote %s (%s, %d bytes)", dest, tag, len(data))
    return dest
