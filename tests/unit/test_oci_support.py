"""Helpers for the OCI tests: hand-made tar layers, OCI layouts and tree listings.

(Named test_oci_* to stay inside the OCI tests' files; it holds no tests itself.)
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import os
import stat
import tarfile
from pathlib import Path
from typing import Any


def _info(name: str, kind: bytes, **kw: Any) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mtime = kw.pop("mtime", 1_600_000_000)
    info.mode = kw.pop("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
    for key, value in kw.items():
        setattr(info, key, value)
    return info


def reg(name: str, data: bytes = b"", **kw: Any) -> tuple[tarfile.TarInfo, bytes]:
    info = _info(name, tarfile.REGTYPE, **kw)
    info.size = len(data)
    return info, data


def dir_(name: str, **kw: Any) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, tarfile.DIRTYPE, **kw), b""


def sym(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, tarfile.SYMTYPE, linkname=target, mode=0o777), b""


def hard(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, tarfile.LNKTYPE, linkname=target), b""


def chardev(name: str, major: int, minor: int) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, tarfile.CHRTYPE, devmajor=major, devminor=minor, mode=0o666), b""


def fifo(name: str) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, tarfile.FIFOTYPE), b""


def whiteout(path: str) -> tuple[tarfile.TarInfo, bytes]:
    parent, _, base = path.rpartition("/")
    return reg(f"{parent}/.wh.{base}" if parent else f".wh.{base}")


def opaque(directory: str) -> tuple[tarfile.TarInfo, bytes]:
    return reg(f"{directory}/.wh..wh..opq")


def layer_bytes(entries: list[tuple[tarfile.TarInfo, bytes]], compress: str = "none") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    raw = buf.getvalue()
    if compress == "gzip":
        return gzip.compress(raw)
    if compress == "xz":
        return lzma.compress(raw)
    if compress == "zstd":
        import zstandard

        return bytes(zstandard.ZstdCompressor().compress(raw))
    return raw


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _put_blob(layout: Path, data: bytes) -> str:
    digest = sha(data)
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (blobs / digest[7:]).write_bytes(data)
    return digest


_LAYER_MEDIA = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "xz": "application/vnd.oci.image.layer.v1.tar",
}


def write_oci_layout(
    layout: Path, layers: list[bytes], compress: str = "none", ref: str = "latest"
) -> str:
    """An OCI image layout holding one image made of ``layers``; returns the manifest digest."""
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    descs = [
        {"mediaType": _LAYER_MEDIA[compress], "digest": _put_blob(layout, data), "size": len(data)}
        for data in layers
    ]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descs]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _put_blob(layout, config),
                "size": len(config),
            },
            "layers": descs,
        }
    ).encode()
    digest = _put_blob(layout, manifest)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest,
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": ref},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))
    return digest


def tree(root: Path) -> dict[str, tuple[str, ...]]:
    """A listing of ``root``: path -> (type, mode, link target or content)."""
    out: dict[str, tuple[str, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            st = path.lstat()
            mode = oct(stat.S_IMODE(st.st_mode))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", mode)
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", mode, path.read_bytes().decode(errors="replace"))
            else:
                out[rel] = ("other", mode)
    return out
