"""Write single-layer images as an OCI image layout archive or a ``docker save`` archive.

Deterministic output (sorted members, owner root, mtime 0, fixed gzip header) so the same root
filesystem always gives the same digests: images/build.py and `ignite kernel build --output`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_EPOCH = 0
_CREATED = "1970-01-01T00:00:00Z"
DEFAULT_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)


def _reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = _EPOCH
    return info


def layer_tar(root: Path) -> bytes:
    """A deterministic uncompressed tar of ``root`` (sorted, owner root, mtime 0)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        paths = sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix())
        for path in paths:
            tar.add(path, arcname=path.relative_to(root).as_posix(), recursive=False, filter=_reset)
    return buf.getvalue()


@dataclass(frozen=True)
class Blob:
    data: bytes
    media_type: str

    @property
    def hex(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def descriptor(self) -> dict[str, object]:
        return {
            "mediaType": self.media_type,
            "digest": f"sha256:{self.hex}",
            "size": len(self.data),
        }


def _json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def image_config(
    layer: bytes,
    *,
    cmd: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
    env: Sequence[str] = DEFAULT_ENV,
    created_by: str = "ignitevm",
) -> bytes:
    """The image config JSON of a one-layer amd64 Linux image."""
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config: dict[str, object] = {"Env": list(env)}
    if cmd is not None:
        config["Cmd"] = list(cmd)
    if labels:
        config["Labels"] = dict(labels)
    return _json(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": _CREATED,
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": _CREATED, "created_by": created_by}],
        }
    )


def tar_of(members: Mapping[str, bytes]) -> bytes:
    """A tar of in-memory files (mode 0644, owner root, mtime 0), in the given order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = _reset(tarfile.TarInfo(name))
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def oci_archive(layer: bytes, tag: str, config: bytes) -> bytes:
    """An OCI image layout (oci-layout, index.json, blobs/sha256/*) as a tar, gzip layer."""
    gz = Blob(
        gzip.compress(layer, compresslevel=6, mtime=0),
        "application/vnd.oci.image.layer.v1.tar+gzip",
    )
    config_blob = Blob(config, "application/vnd.oci.image.config.v1+json")
    manifest = Blob(
        _json(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config_blob.descriptor,
                "layers": [gz.descriptor],
            }
        ),
        "application/vnd.oci.image.manifest.v1+json",
    )
    _, _, version = tag.rpartition(":")
    entry = dict(manifest.descriptor)
    entry["annotations"] = {
        "org.opencontainers.image.ref.name": version,
        "io.containerd.image.name": tag,
    }
    index = _json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [entry],
        }
    )
    members = {"oci-layout": _json({"imageLayoutVersion": "1.0.0"}), "index.json": index}
    for blob in (config_blob, gz, manifest):
        members[f"blobs/sha256/{blob.hex}"] = blob.data
    log.debug("image %s, manifest %s", tag, manifest.hex)
    return tar_of(members)


def docker_archive(layer: bytes, tag: str, config: bytes) -> bytes:
    """``docker save`` format: manifest.json, <config>.json, <id>/layer.tar, repositories."""
    config_hex = hashlib.sha256(config).hexdigest()
    layer_id = hashlib.sha256(layer).hexdigest()
    name, _, version = tag.rpartition(":")
    manifest = [
        {"Config": f"{config_hex}.json", "RepoTags": [tag], "Layers": [f"{layer_id}/layer.tar"]}
    ]
    return tar_of(
        {
            f"{config_hex}.json": config,
            f"{layer_id}/VERSION": b"1.0",
            f"{layer_id}/json": _json({"id": layer_id}),
            f"{layer_id}/layer.tar": layer,
            "manifest.json": _json(manifest),
            "repositories": _json({name: {version: layer_id}}),
        }
    )
