"""Use cases for images: import (OCI source -> read-only ext4 base), list, remove."""

from __future__ import annotations

import logging
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from ignitevm.api import Image, Kind, ObjectMeta, Size
from ignitevm.api.types import ImageSpec, ImageStatus, OCIImageSource
from ignitevm.errors import IgniteError
from ignitevm.fsutil import restrict
from ignitevm.layout import OBJECT_DIR_MODE, ImageFiles
from ignitevm.ops.services import Services
from ignitevm.store.scratch import scratch_dir

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
        restrict_image(svc, existing)
        return existing
    with scratch_dir(svc.store.tmp_dir(), "import") as work:
        log.info("importing %s", resolved.name)
        owners = unpack_image(resolved, work / "rootfs", svc.fetch)
        obj_dir = work / "object"
        obj_dir.mkdir()
        build_base_image(work / "rootfs", obj_dir / ImageFiles.BASE, owners=owners)
        restrict(obj_dir, OBJECT_DIR_MODE, ImageFiles.PRIVATE)
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


def ensure_image(svc: Services, ref: str) -> Image:
    """The stored image ``ref`` names, imported first when it is not stored."""
    image = find_image(svc, ref)
    if image is None:
        return import_image(svc, ref)
    restrict_image(svc, image)
    return image


def restrict_image(svc: Services, image: Image) -> None:
    """An image's contents are root's (0600 in a 0711 directory), also when an older version
    imported it: a secret baked into an image must not be readable by every local user."""
    restrict(
        svc.store.object_dir(Kind.IMAGE, image.metadata.uid), OBJECT_DIR_MODE, ImageFiles.PRIVATE
    )


def remove_image(svc: Services, query: str, *, force: bool = False) -> Image:
    from ignitevm.ops.refs import require_unused

    image = find_image(svc, query)
    if image is None:
        image = svc.store.require(Kind.IMAGE, query)
    require_unused(svc, Kind.IMAGE, image, force=force)
    svc.store.delete(Kind.IMAGE, image.metadata.uid)
    return image


def image_disk_bytes(svc: Services, image: Image) -> int:
    """Bytes the base image really takes on disk (it is sparse)."""
    try:
        return base_image_path(svc, image).stat().st_blocks * 512
    except OSError:
        return 0
