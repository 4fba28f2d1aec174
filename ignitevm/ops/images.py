"""Use cases for images: import (OCI source -> read-only ext4 base), list, remove."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from ignitevm.api import VM, Image, Kind, ObjectMeta, Size
from ignitevm.api.types import ImageSpec, ImageStatus, OCIImageSource
from ignitevm.errors import ConflictError, IgniteError
from ignitevm.layout import ImageFiles
from ignitevm.ops.services import Services

log = logging.getLogger(__name__)


def base_image_path(svc: Services, image: Image) -> Path:
    return svc.store.object_dir(Kind.IMAGE, image.metadata.uid) / ImageFiles.BASE


def find_image(svc: Services, query: str) -> Image | None:
    """By uid prefix or name, also trying Docker's normalizations ("alpine" = "alpine:latest")."""
    for candidate in _name_variants(query):
        image = svc.store.find(Kind.IMAGE, candidate)
        if image is not None:
            return image
    return None


def _name_variants(query: str) -> list[str]:
    variants = [query]
    last = query.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in query:
        variants.append(f"{query}:latest")
    return variants


def import_image(svc: Services, source: str, *, name: str | None = None) -> Image:
    """Import ``source`` unless an image with the same config digest is stored (then a no-op)."""
    from ignitevm.disk.base import build_base_image
    from ignitevm.oci import resolve_image, unpack_image

    try:
        resolved = resolve_image(source, svc.fetch)
    except IgniteError as exc:
        exc.add_context(f"cannot import image {source!r}")
        raise
    uid = resolved.uid
    existing = svc.store.find(Kind.IMAGE, uid)
    if existing is not None and base_image_path(svc, existing).exists():
        log.info("image %s (%s) is already imported", existing.metadata.name, uid)
        return existing
    work = Path(tempfile.mkdtemp(prefix="import-", dir=svc.store.tmp_dir()))
    try:
        log.info("importing %s", resolved.name)
        unpack_image(resolved, work / "rootfs", svc.fetch)
        obj_dir = work / "object"
        obj_dir.mkdir()
        build_base_image(work / "rootfs", obj_dir / ImageFiles.BASE)
        image = Image(
            metadata=ObjectMeta(name=name or resolved.name, uid=uid, created=datetime.now(UTC)),
            spec=ImageSpec(oci=resolved.name),
            status=ImageStatus(
                oci_source=OCIImageSource(id=resolved.digest, size=Size(resolved.size)),
                digest=resolved.digest,
                config_digest=resolved.config_digest,
                source=source,
            ),
        )
        target = svc.store.object_dir(Kind.IMAGE, uid)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(obj_dir, target)
        except OSError:
            # Another import of the same image won the race, or a broken leftover is there.
            if svc.store.find(Kind.IMAGE, uid) is not None:
                return svc.store.require(Kind.IMAGE, uid)
            shutil.rmtree(target, ignore_errors=True)
            os.rename(obj_dir, target)
        svc.store.save(image)
        return image
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ensure_image(svc: Services, ref: str) -> Image:
    """The stored image ``ref`` names, imported first when it is not stored."""
    image = find_image(svc, ref)
    return image if image is not None else import_image(svc, ref)


def image_users(svc: Services, image: Image) -> list[str]:
    return [
        vm.metadata.name
        for vm in svc.store.list(Kind.VM)
        if vm.status.image.id == image.status.oci_source.id
    ]


def image_of_vm(svc: Services, digest: str) -> Image | None:
    """The stored image whose digest a VM's status records (Ignite's status.image.id)."""
    for image in svc.store.list(Kind.IMAGE):
        if image.status.oci_source.id == digest:
            return image
    return None


def require_image_of_vm(svc: Services, vm: VM) -> Image:
    image = image_of_vm(svc, vm.status.image.id)
    if image is None:
        raise IgniteError(
            f"the image of VM {vm.metadata.name} ({vm.spec.image.oci}) is no longer stored",
            hint="recreate the VM: its disk is a copy-on-write layer over that image",
        )
    return image


def remove_image(svc: Services, query: str, *, force: bool = False) -> Image:
    image = find_image(svc, query)
    if image is None:
        image = svc.store.require(Kind.IMAGE, query)
    users = image_users(svc, image)
    if users and not force:
        raise ConflictError(
            f"image {image.metadata.name} is used by VM(s): {', '.join(users)}",
            hint="remove those VMs first, or use -f (their disks keep a copy-on-write link "
            "to the image and will no longer start)",
        )
    svc.store.delete(Kind.IMAGE, image.metadata.uid)
    return image


def image_disk_bytes(svc: Services, image: Image) -> int:
    """Bytes the base image really takes on disk (it is sparse)."""
    try:
        return base_image_path(svc, image).stat().st_blocks * 512
    except OSError:
        return 0
