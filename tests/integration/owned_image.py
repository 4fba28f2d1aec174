"""An image whose files belong to several users: the default image plus entries owned by uid 0,
1000 and 65534, a setuid and a setgid file and a device node (what a rootless import must keep:
docs/images.md "Imports without root")."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

from ignitevm.oci import write

# path -> (uid, gid, mode, content); mode includes the file type bits for devices
OWNED: dict[str, tuple[int, int, int, bytes]] = {
    "home/alice/notes": (1000, 1000, 0o640, b"alice\n"),
    "var/lib/nobody/file": (65534, 65534, 0o600, b"nobody\n"),
    "usr/local/bin/suid-tool": (0, 0, 0o4755, b"#!/bin/sh\nid\n"),
    "usr/local/bin/sgid-tool": (0, 50, 0o2755, b"#!/bin/sh\nid\n"),
}
DIRS = {"home/alice": (1000, 1000, 0o750), "var/lib/nobody": (65534, 65534, 0o700)}
DEVICE = ("dev/ignite-null", 1, 3)  # a char device with the numbers of /dev/null


def _layer_of(archive: Path) -> bytes:
    with tarfile.open(archive) as outer:
        index = json.loads(outer.extractfile("index.json").read())  # type: ignore[union-attr]
        digest = index["manifests"][0]["digest"].split(":")[1]
        manifest = json.loads(outer.extractfile(f"blobs/sha256/{digest}").read())  # type: ignore[union-attr]
        layer = manifest["layers"][0]["digest"].split(":")[1]
        return gzip.decompress(outer.extractfile(f"blobs/sha256/{layer}").read())  # type: ignore[union-attr]


def build_owned_image(default_archive: Path, out: Path) -> Path:
    """``out``: an oci-archive of the default image with OWNED, DIRS and DEVICE added."""
    buf = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(_layer_of(default_archive))) as base,
        tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for member in base:
            tar.addfile(member, base.extractfile(member) if member.isreg() else None)
        for name, (uid, gid, mode) in DIRS.items():
            info = tarfile.TarInfo(name)
            info.type, info.uid, info.gid, info.mode = tarfile.DIRTYPE, uid, gid, mode
            tar.addfile(info)
        for name, (uid, gid, mode, data) in OWNED.items():
            info = tarfile.TarInfo(name)
            info.uid, info.gid, info.mode, info.size = uid, gid, mode, len(data)
            tar.addfile(info, io.BytesIO(data))
        name, major, minor = DEVICE
        info = tarfile.TarInfo(name)
        info.type, info.devmajor, info.devminor, info.mode = tarfile.CHRTYPE, major, minor, 0o666
        tar.addfile(info)
    layer = buf.getvalue()
    tag = "ignitevm/owned:latest"
    out.write_bytes(write.oci_archive(layer, tag, write.image_config(layer)))
    return out
