"""Use cases for kernels: import (OCI image, Debian package, apt, vmlinux file), list, remove."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from ignitevm.api import Kernel, Kind, ObjectMeta, Size
from ignitevm.api.types import KernelSpec, KernelStatus, OCIImageSource
from ignitevm.errors import IgniteError, NotFoundError, ValidationError
from ignitevm.kernel.source import FoundKernel
from ignitevm.layout import KernelFiles
from ignitevm.ops.services import Services
from ignitevm.store.scratch import scratch_dir

log = logging.getLogger(__name__)


def modules_disk(svc: Services, kernel: Kernel) -> Path | None:
    """The kernel's modules disk (label ignite-modules), None for a kernel without modules."""
    path = svc.store.object_dir(Kind.KERNEL, kernel.metadata.uid) / KernelFiles.MODULES
    return path if path.is_file() else None


def kernel_files(svc: Services, kernel: Kernel) -> tuple[Path, Path]:
    """(vmlinux, base initramfs) of a stored kernel."""
    d = svc.store.object_dir(Kind.KERNEL, kernel.metadata.uid)
    return d / KernelFiles.VMLINUX, d / KernelFiles.INITRD


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _existing(svc: Services, digest: str) -> Kernel | None:
    kernel = svc.store.find(Kind.KERNEL, digest.partition(":")[2][:16])
    if kernel is not None and kernel_files(svc, kernel)[0].exists():
        return kernel
    return None


def import_kernel(
    svc: Services,
    source: str | None,
    *,
    vmlinux: Path | None = None,
    modules: Path | None = None,
    name: str | None = None,
) -> Kernel:
    """Import a kernel; the same content again is a no-op. ``source`` is ``deb:FILE``,
    ``apt:PACKAGE`` or an OCI image source; or None with ``vmlinux`` (+ ``modules``)."""
    from ignitevm import kernel as k

    if source is None and vmlinux is None:
        raise ValidationError(
            "no kernel source given",
            hint="name a source (deb:FILE, apt:PACKAGE, an image) or pass --vmlinux FILE",
        )
    if vmlinux is not None and not vmlinux.is_file():
        raise NotFoundError(f"vmlinux file {vmlinux} does not exist")
    if modules is not None and not modules.is_dir():
        raise NotFoundError(f"modules directory {modules} does not exist")
    with scratch_dir(svc.store.tmp_dir(), "kernel") as work:
        display = source or f"vmlinux:{vmlinux}"
        if vmlinux is not None:
            digest = _sha256_file(vmlinux)
            if (found := _existing(svc, digest)) is not None:
                return found
            files = k.FoundKernel(vmlinux, k.detect_version(vmlinux, modules), modules)
        elif source is not None and source.startswith(("deb:", "apt:")):
            deb = _deb_path(svc, source)
            digest = _sha256_file(deb)
            if (found := _existing(svc, digest)) is not None:
                return found
            files = k.extract_deb(deb, work / "deb")
        else:
            assert source is not None
            from ignitevm.oci import resolve_image, unpack_image

            try:
                resolved = resolve_image(source, svc.fetch)
            except IgniteError as exc:
                exc.add_context(f"cannot import kernel {source!r}")
                raise
            digest, display = resolved.config_digest, resolved.name
            if (found := _existing(svc, digest)) is not None:
                return found
            unpack_image(resolved, work / "rootfs", svc.fetch)
            files = k.find_kernel_in_rootfs(work / "rootfs", work / "files")
        return store_kernel(svc, files, digest, name or display, source or display, work)


def _deb_path(svc: Services, source: str) -> Path:
    scheme, _, rest = source.partition(":")
    if not rest:
        raise ValidationError(f"kernel source {source!r} names no {scheme} package")
    if scheme == "apt":
        from ignitevm.kernel.apt import download_package

        return download_package(rest, svc.store.cache_dir() / "deb")
    path = Path(rest)
    if not path.is_file():
        raise NotFoundError(
            f"kernel package {path} does not exist",
            hint="download one with `apt-get download linux-image-<version>-amd64`, "
            "or use apt:linux-image-amd64",
        )
    return path


def store_kernel(
    svc: Services, files: FoundKernel, digest: str, name: str, source: str, work: Path
) -> Kernel:
    from ignitevm import kernel as k

    uid = digest.partition(":")[2][:16]
    obj_dir = work / "object"
    obj_dir.mkdir()
    k.to_vmlinux(files.vmlinux, obj_dir / KernelFiles.VMLINUX)
    keep_kernel_config(work, files.version, obj_dir)
    k.build_initramfs(
        obj_dir / KernelFiles.INITRD, modules_dir=files.modules_dir, version=files.version
    )
    if files.modules_dir is not None:
        # the guest's modprobe finds every module (br_netfilter, nf_tables, ...) there, as in
        # Ignite, where the kernel's modules were copied into each VM; here one disk is shared
        k.build_modules_image(
            files.modules_dir, obj_dir / KernelFiles.MODULES, version=files.version
        )
    size = sum(p.stat().st_size for p in obj_dir.iterdir())
    kernel = Kernel(
        metadata=ObjectMeta(name=name, uid=uid, created=datetime.now(UTC)),
        spec=KernelSpec(oci=name),
        status=KernelStatus(
            version=files.version,
            oci_source=OCIImageSource(id=digest, size=Size(size)),
            source=source,
        ),
    )
    target = svc.store.object_dir(Kind.KERNEL, uid)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(obj_dir, target)
    except OSError:
        if (found := _existing(svc, digest)) is not None:
            return found
        shutil.rmtree(target, ignore_errors=True)
        os.rename(obj_dir, target)
    svc.store.save(kernel)
    log.info("kernel %s (%s) imported, version %s", name, uid, files.version)
    return kernel


def keep_kernel_config(work: Path, version: str, obj_dir: Path) -> None:
    """Keep the kernel's build config (Debian's package and many images ship
    /boot/config-<version>) as ``config``: preflight reads it to tell whether the kernel fits
    Firecracker (CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES)."""
    for root in (work / "deb" / "rootfs", work / "rootfs"):
        config = root / "boot" / f"config-{version}"
        if config.is_file() and not config.is_symlink():
            shutil.copyfile(config, obj_dir / KernelFiles.CONFIG)
            return


def ensure_kernel(svc: Services, ref: str) -> Kernel:
    kernel = svc.store.find(Kind.KERNEL, ref)
    return kernel if kernel is not None else import_kernel(svc, ref)


def remove_kernel(svc: Services, query: str, *, force: bool = False) -> Kernel:
    from ignitevm.ops.refs import require_unused

    kernel = svc.store.require(Kind.KERNEL, query)
    require_unused(svc, Kind.KERNEL, kernel, force=force)
    svc.store.delete(Kind.KERNEL, kernel.metadata.uid)
    return kernel
