"""Data types shared by the image sources, the registry client and the layer applier."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class MediaType(StrEnum):
    OCI_INDEX = "application/vnd.oci.image.index.v1+json"
    OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
    OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
    OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
    OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
    OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
    DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
    DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
    DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
    # Pseudo layer for ``dir:`` sources: a directory tree instead of a tar stream.
    DIRECTORY = "application/x-ignitevm-directory"


INDEX_TYPES = frozenset({MediaType.OCI_INDEX, MediaType.DOCKER_LIST})
MANIFEST_TYPES = frozenset({MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST})
LAYER_TYPES = frozenset(
    {
        MediaType.OCI_LAYER,
        MediaType.OCI_LAYER_GZIP,
        MediaType.OCI_LAYER_ZSTD,
        MediaType.OCI_LAYER_NONDIST_GZIP,
        MediaType.DOCKER_LAYER_GZIP,
        MediaType.DOCKER_FOREIGN_LAYER,
        MediaType.DIRECTORY,
    }
)


class SourceKind(StrEnum):
    REGISTRY = "registry"
    OCI_ARCHIVE = "oci-archive"
    OCI_DIR = "oci"
    DOCKER_ARCHIVE = "docker-archive"
    TAR = "tar"
    DIR = "dir"


@dataclass(frozen=True)
class FetchOptions:
    """How to fetch images: where blobs are cached, which platform, registry access."""

    cache_dir: Path
    platform: str = "linux/amd64"
    insecure_registries: tuple[str, ...] = ()
    registry_config_dir: Path | None = None
    progress: bool = False


@dataclass(frozen=True)
class LayerDescriptor:
    """One layer. ``digest`` is what the blob is verified against; ``diff_id`` (when set and
    ``verify_diff_id``) is checked over the uncompressed stream instead (docker-archive)."""

    digest: str
    media_type: str
    size: int
    diff_id: str | None = None
    verify_diff_id: bool = False
    # Where the blob lives inside a local source (archive member or file path); "" for registries.
    location: str = ""


@dataclass(frozen=True)
class ImageSource:
    """Where an image's blobs come from, so ``unpack_image`` can read them later."""

    kind: SourceKind
    location: str  # registry reference text, or an absolute file/directory path


@dataclass(frozen=True)
class ResolvedImage:
    """An image whose manifest and config are known; no layer has been read yet."""

    name: str
    digest: str
    config_digest: str
    config: dict[str, Any]
    layers: tuple[LayerDescriptor, ...]
    size: int
    # Where to read the layers from; None for images built by hand (they cannot be unpacked).
    source: ImageSource | None = field(compare=False, default=None)

    @property
    def uid(self) -> str:
        """The store's image uid: the first 16 hex characters of the config digest."""
        return self.config_digest.partition(":")[2][:16]
