"""Resolving an image source to its manifest and config, and unpacking its layers."""

from __future__ import annotations

import io
import logging
import os
import tarfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import IO, cast

from ignitevm.disk.ownership import OwnerTable
from ignitevm.errors import IgniteError, ValidationError
from ignitevm.oci.blobs import BlobCache, DigestMismatchError, HashingReader
from ignitevm.oci.compression import decompressed
from ignitevm.oci.layer import LayerApplier, applier
from ignitevm.oci.local import (
    Bundle,
    resolve_directory,
    resolve_docker_archive,
    resolve_layout,
    resolve_tarball,
    walk_tree,
)
from ignitevm.oci.manifest import (
    is_index,
    load_json,
    parse_manifest,
    parse_platform,
    select_platform,
)
from ignitevm.oci.owners import Owners, owners_for
from ignitevm.oci.progress import ProgressReporter
from ignitevm.oci.readahead import ReadAhead
from ignitevm.oci.reference import parse_reference
from ignitevm.oci.registry import RegistryClient
from ignitevm.oci.types import (
    FetchOptions,
    ImageSource,
    LayerDescriptor,
    MediaType,
    ResolvedImage,
    SourceKind,
)

log = logging.getLogger(__name__)

_TRANSPORTS = {
    "oci-archive": SourceKind.OCI_ARCHIVE,
    "oci": SourceKind.OCI_DIR,
    "docker-archive": SourceKind.DOCKER_ARCHIVE,
    "tar": SourceKind.TAR,
    "dir": SourceKind.DIR,
    "docker": SourceKind.REGISTRY,
}

LayerOpener = Callable[[LayerDescriptor], AbstractContextManager[IO[bytes]]]


def parse_source(text: str) -> tuple[SourceKind, str]:
    """Split ``TRANSPORT:REST``; anything without a known transport is a registry reference."""
    prefix, sep, rest = text.partition(":")
    kind = _TRANSPORTS.get(prefix) if sep else None
    if kind is None:
        return SourceKind.REGISTRY, text
    if kind is SourceKind.REGISTRY:
        rest = rest.removeprefix("//")  # skopeo's docker://REF
    if not rest:
        raise ValidationError(f"image source {text!r} names no {prefix} location")
    return kind, rest


def resolve_image(source: str, opts: FetchOptions) -> ResolvedImage:
    """Read an image's manifest and config (no layer is downloaded or read)."""
    kind, rest = parse_source(source)
    if kind is SourceKind.TAR:
        return resolve_tarball(rest)
    if kind is SourceKind.DIR:
        return resolve_directory(rest)
    if kind is SourceKind.REGISTRY:
        image = _resolve_registry(rest, opts)
    elif kind is SourceKind.DOCKER_ARCHIVE:
        image = resolve_docker_archive(rest)
    else:
        image = resolve_layout(kind, rest, opts.platform)
    _warn_platform(image, opts.platform)
    return image


def _warn_platform(image: ResolvedImage, platform: str) -> None:
    """Single-platform images are taken as they are, but say so when they do not fit."""
    want = parse_platform(platform)
    have_os, have_arch = image.config.get("os"), image.config.get("architecture")
    if (have_os, have_arch) != (want.os, want.architecture) and have_arch is not None:
        log.warning("image %s is built for %s/%s, not %s", image.name, have_os, have_arch, platform)


def _resolve_registry(text: str, opts: FetchOptions) -> ResolvedImage:
    ref = parse_reference(text)
    with RegistryClient(ref, opts) as client:
        data, media, digest = client.get_manifest(ref.target)
        doc = load_json(data, f"{ref}: manifest")
        if is_index(doc, media or None):
            desc = select_platform(doc, opts.platform, str(ref))
            data, media, digest = client.get_manifest(str(desc["digest"]))
            doc = load_json(data, f"{ref}: manifest")
            media = media or str(desc.get("mediaType", ""))
        manifest = parse_manifest(doc, f"{ref}: manifest", media or None)
        config = load_json(client.get_blob_bytes(manifest.config_digest), f"{ref}: config")
    return ResolvedImage(
        name=str(ref),
        digest=digest,
        config_digest=manifest.config_digest,
        config=config,
        layers=manifest.layers,
        size=sum(layer.size for layer in manifest.layers),
        source=ImageSource(SourceKind.REGISTRY, str(ref)),
    )


def unpack_image(
    image: ResolvedImage, dest: Path, opts: FetchOptions, owners: Owners | None = None
) -> OwnerTable | None:
    """Apply the image's layers, in order, into the empty directory ``dest``.

    Raises UnsafeLayerError (naming layer and entry) for anything that would reach outside
    ``dest``; on any error the caller removes ``dest``. Returns what the host files could not
    carry (owners, devices, without root: oci/owners.py), for ``build_base_image``.
    """
    owners = owners or owners_for()
    if image.source is None:
        raise ValidationError(
            f"image {image.name} has no source to read its layers from",
            hint="get the image from resolve_image()",
        )
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise ValidationError(f"{dest} is not empty", hint="unpack into a new directory")
    with ExitStack() as stack:
        reporter = stack.enter_context(ProgressReporter(opts.progress))
        opener = stack.enter_context(_layer_opener(image.source, image.layers, opts, reporter))
        app = stack.enter_context(applier(dest, owners))
        for layer in image.layers:
            if layer.media_type == MediaType.DIRECTORY:
                apply_directory(app, Path(layer.location), layer.digest)
                continue
            with opener(layer) as raw:
                _apply_verified(app, raw, layer)
    return owners.table


def _apply_verified(app: LayerApplier, raw: IO[bytes], layer: LayerDescriptor) -> None:
    """Apply a layer blob while checking its digest (or, for docker-archive, its diff_id).

    Decompression and hashing run in a read-ahead thread; the digest is checked once the
    stream is fully read, so a tampered layer fails the import (the caller removes dest).
    """
    what = f"layer {layer.digest}"
    if layer.verify_diff_id and layer.diff_id:
        stream, kind = decompressed(raw)
        checked = HashingReader(stream, layer.diff_id, what)
        source = cast(IO[bytes], checked)
    else:
        checked = HashingReader(raw, layer.digest, what)
        source, kind = decompressed(checked)
    log.debug("applying %s (%s)", layer.digest, kind)
    with ReadAhead(source, layer.digest) as ahead:
        app.apply_tar(cast(IO[bytes], ahead), layer.digest)
        ahead.drain()
    checked.verify()


@contextmanager
def _layer_opener(
    source: ImageSource,
    layers: tuple[LayerDescriptor, ...],
    opts: FetchOptions,
    reporter: ProgressReporter,
) -> Iterator[LayerOpener]:
    kind = source.kind
    if kind is SourceKind.REGISTRY:
        with _registry_opener(source, layers, opts, reporter) as opener:
            yield opener
        return
    if kind in (SourceKind.OCI_ARCHIVE, SourceKind.OCI_DIR, SourceKind.DOCKER_ARCHIVE):
        bundle = Bundle(Path(source.location))
        try:

            @contextmanager
            def open_member(layer: LayerDescriptor) -> Iterator[IO[bytes]]:
                with bundle.open(layer.location) as f:
                    yield reporter.wrap(f, layer)

            yield open_member
        finally:
            bundle.close()
        return

    @contextmanager
    def open_file(layer: LayerDescriptor) -> Iterator[IO[bytes]]:
        with open(layer.location, "rb") as f:
            yield reporter.wrap(f, layer)

    yield open_file


@contextmanager
def _registry_opener(
    source: ImageSource,
    layers: tuple[LayerDescriptor, ...],
    opts: FetchOptions,
    reporter: ProgressReporter,
) -> Iterator[LayerOpener]:
    ref = parse_reference(source.location)
    cache = BlobCache(opts.cache_dir)
    with RegistryClient(ref, opts) as client, ThreadPoolExecutor(max_workers=2) as pool:
        # Download ahead while earlier layers are being applied.
        futures: dict[str, Future[Path]] = {}
        for layer in layers:
            if layer.digest not in futures:
                futures[layer.digest] = pool.submit(
                    client.fetch_blob, layer.digest, reporter.callback(layer)
                )

        @contextmanager
        def open_blob(layer: LayerDescriptor) -> Iterator[IO[bytes]]:
            path = futures[layer.digest].result()
            try:
                with open(path, "rb") as f:
                    yield f
            except DigestMismatchError:
                cache.drop(layer.digest)  # a corrupt cache entry must not survive
                raise

        try:
            yield open_blob
        finally:
            for future in futures.values():
                future.cancel()


def apply_directory(app: LayerApplier, root: Path, label: str) -> None:
    """Copy a rootfs directory with the same rules as a tar layer (``dir:`` sources)."""
    app.begin_layer(label)
    # gettarinfo() builds tar headers from lstat and tracks hard links by inode.
    with tarfile.open(fileobj=io.BytesIO(), mode="w", format=tarfile.PAX_FORMAT) as headers:
        for rel, _st, _link in walk_tree(root):
            path = os.path.join(root, rel)
            info = headers.gettarinfo(path, arcname=rel)
            if info is None:
                log.debug("%s: skipping socket %s", root, rel)
                continue
            _read_xattrs(path, info)
            if info.isreg():
                try:
                    with open(path, "rb") as f:
                        app.apply_member(info, None, f)
                except OSError as exc:
                    raise IgniteError(f"cannot read {path}: {exc}") from exc
            else:
                app.apply_member(info, None)


def _read_xattrs(path: str, info: tarfile.TarInfo) -> None:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        pax = dict(info.pax_headers)
        pax[f"SCHILY.xattr.{name}"] = value.decode("utf-8", "surrogateescape")
        info.pax_headers = pax
