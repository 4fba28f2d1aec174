"""OCI images: references, registry client, local image sources, safe layer application."""

from ignitevm.oci.blobs import BlobCache, DigestMismatchError
from ignitevm.oci.image import parse_source, resolve_image, unpack_image
from ignitevm.oci.reference import Reference, parse_reference
from ignitevm.oci.types import (
    FetchOptions,
    ImageSource,
    LayerDescriptor,
    MediaType,
    ResolvedImage,
    SourceKind,
)

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
