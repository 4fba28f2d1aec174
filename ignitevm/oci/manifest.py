"""Parsing image indexes, manifests and configs; choosing the platform's manifest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ignitevm.errors import IgniteError, NotFoundError, ValidationError
from ignitevm.oci.blobs import digest_hex
from ignitevm.oci.types import INDEX_TYPES, LAYER_TYPES, MANIFEST_TYPES, LayerDescriptor, MediaType

REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text


@dataclass(frozen=True)
class Manifest:
    config_digest: str
    layers: tuple[LayerDescriptor, ...]


def parse_platform(text: str) -> Platform:
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValidationError(
            f"invalid platform {text!r}", hint="use OS/ARCH[/VARIANT], e.g. linux/amd64"
        )
    return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else None)


def load_json(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IgniteError(f"{what} is not valid JSON: {exc}", hint="the image is corrupt") from exc
    if not isinstance(doc, dict):
        raise IgniteError(f"{what} is not a JSON object", hint="the image is corrupt")
    return doc


def media_type_of(doc: dict[str, Any], fallback: str | None = None) -> str:
    """A document's media type: its own field, the transport's, or guessed from its shape."""
    media = doc.get("mediaType") or fallback or ""
    if media:
        return str(media)
    if doc.get("schemaVersion") == 1:
        return MediaType.DOCKER_SCHEMA1_SIGNED
    return MediaType.OCI_INDEX if "manifests" in doc else MediaType.OCI_MANIFEST


def is_index(doc: dict[str, Any], fallback: str | None = None) -> bool:
    return media_type_of(doc, fallback) in INDEX_TYPES


def _matches(entry: dict[str, Any], want: Platform) -> bool:
    plat = entry.get("platform") or {}
    if plat.get("os") != want.os or plat.get("architecture") != want.architecture:
        return False
    variant = plat.get("variant")
    if want.variant is None:
        # arm64 images carry "v8"; amd64 may carry v2/v3 levels we can run as well.
        return True
    return bool(variant == want.variant)


def select_platform(index: dict[str, Any], platform: str, what: str) -> dict[str, Any]:
    """The descriptor of the manifest in ``index`` built for ``platform``."""
    want = parse_platform(platform)
    entries = [e for e in index.get("manifests", []) if isinstance(e, dict)]
    for entry in entries:
        if _matches(entry, want) and media_type_of(entry) not in INDEX_TYPES | {""}:
            return entry
    for entry in entries:
        if _matches(entry, want):
            return entry
    available = sorted(
        {
            str(Platform(p.get("os", "?"), p.get("architecture", "?"), p.get("variant")))
            for e in entries
            if isinstance(p := e.get("platform"), dict) and p.get("os") != "unknown"
        }
    )
    raise NotFoundError(
        f"{what} has no image for platform {platform}; available: "
        + (", ".join(available) or "none"),
        hint="pick one with --platform",
    )


def select_by_name(index: dict[str, Any], name: str | None, what: str) -> dict[str, Any] | None:
    """The descriptor tagged ``name`` in an OCI layout's index.json (None: use the platform)."""
    entries = [e for e in index.get("manifests", []) if isinstance(e, dict)]
    if name is None:
        return entries[0] if len(entries) == 1 else None
    for entry in entries:
        if (entry.get("annotations") or {}).get(REF_NAME) == name:
            return entry
    names = sorted(
        str(n) for e in entries if (n := (e.get("annotations") or {}).get(REF_NAME)) is not None
    )
    raise NotFoundError(
        f"{what} has no image named {name!r}; it has: {', '.join(names) or 'no named images'}",
        hint="name one of those after the path (oci-archive:FILE:NAME)",
    )


def parse_manifest(doc: dict[str, Any], what: str, fallback: str | None = None) -> Manifest:
    media = media_type_of(doc, fallback)
    if media == MediaType.DOCKER_SCHEMA1_SIGNED or doc.get("schemaVersion") == 1:
        raise IgniteError(
            f"{what} is a Docker schema 1 manifest, which is not supported",
            hint="push the image again with a current tool (it then uses schema 2 / OCI)",
        )
    if media not in MANIFEST_TYPES:
        raise IgniteError(f"{what} has unsupported media type {media!r}")
    try:
        config = doc["config"]
        config_digest = str(config["digest"])
        digest_hex(config_digest)
        layers = []
        for layer in doc.get("layers") or []:
            layer_media = str(layer.get("mediaType", MediaType.OCI_LAYER_GZIP))
            if layer_media not in LAYER_TYPES:
                raise IgniteError(
                    f"{what}: layer {layer.get('digest')} has unsupported media type "
                    f"{layer_media!r}",
                    hint="only tar layers (plain, gzip, zstd) can become a root filesystem",
                )
            digest = str(layer["digest"])
            digest_hex(digest)
            layers.append(LayerDescriptor(digest, layer_media, int(layer.get("size", 0))))
    except (KeyError, TypeError, ValueError) as exc:
        raise IgniteError(f"{what} is malformed: {exc!r}", hint="the image is corrupt") from exc
    return Manifest(config_digest, tuple(layers))
