"""OCI images: references, registry client, local image sources, safe layer application.

The data types import cheaply; the functions that do the work (and pull in tarfile, threads,
compression) load on first use, so building a FetchOptions costs a CLI start-up nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ignitevm.oci.reference import Reference, parse_reference
from ignitevm.oci.types import (
    FetchOptions,
    ImageSource,
    LayerDescriptor,
    MediaType,
    ResolvedImage,
    SourceKind,
)

if TYPE_CHECKING:
    from ignitevm.oci.blobs import BlobCache, DigestMismatchError
    from ignitevm.oci.image import parse_source, resolve_image, unpack_image

_LAZY = {
    "BlobCache": "ignitevm.oci.blobs",
    "DigestMismatchError": "ignitevm.oci.blobs",
    "parse_source": "ignitevm.oci.image",
    "resolve_image": "ignitevm.oci.image",
    "unpack_image": "ignitevm.oci.image",
}

__all__ = [
    "BlobCache",
    "DigestMismatchError",
    "FetchOptions",
    "ImageSource",
    "LayerDescriptor",
    "MediaType",
    "Reference",
    "ResolvedImage",
    "SourceKind",
    "parse_reference",
    "parse_source",
    "resolve_image",
    "unpack_image",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
