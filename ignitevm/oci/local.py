"""Images on the local filesystem: OCI layouts (directory or tar), ``docker save`` archives,
plain rootfs tarballs and rootfs directories."""

from __future__ import annotations

import json
import logging
import os
import platform as host_platform
import stat
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from ignitevm.errors import IgniteError, NotFoundError, ValidationError
from ignitevm.oci.blobs import digest_hex, sha256_bytes, sha256_file, verify_bytes
from ignitevm.oci.manifest import (
    REF_NAME,
    is_index,
    load_json,
    parse_manifest,
    select_by_name,
    select_platform,
)
from ignitevm.oci.types import (
    ImageSource,
    LayerDescriptor,
    MediaType,
    ResolvedImage,
    SourceKind,
)

log = logging.getLogger(__name__)


class Bundle:
    """Files of an OCI layout or docker-archive, from a directory or from a tar file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tar: tarfile.TarFile | None = None
        self._members: dict[str, tarfile.TarInfo] = {}
        if path.is_dir():
            return
        if not path.is_file():
            raise NotFoundError(f"{path} does not exist", hint="check the path")
        try:
            self._tar = tarfile.open(path, "r:*")  # noqa: SIM115 (closed by close())
            for member in self._tar.getmembers():
                self._members[os.path.normpath(member.name).lstrip("/")] = member
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise IgniteError(f"{path} is not a readable tar archive: {exc}") from exc

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()

    def exists(self, name: str) -> bool:
        if self._tar is None:
            return (self.path / name).is_file()
        return name in self._members

    def size(self, name: str) -> int:
        if self._tar is None:
            return (self.path / name).stat().st_size
        return self._members[name].size

    @contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        if self._tar is None:
            file = self.path / name
            if Path(name).is_absolute() or ".." in Path(name).parts or not file.is_file():
                raise IgniteError(f"{self.path}: {name} is missing", hint="the image is corrupt")
            with open(file, "rb") as f:
                yield f
            return
        member = self._members.get(name)
        stream = self._tar.extractfile(member) if member is not None else None
        if stream is None:
            raise IgniteError(f"{self.path}: {name} is missing", hint="the image is corrupt")
        with stream:
            yield stream

    def read(self, name: str) -> bytes:
        with self.open(name) as f:
            return f.read()

    def read_blob(self, digest: str, what: str) -> bytes:
        data = self.read(blob_name(digest))
        verify_bytes(data, digest, f"{self.path}: {what}")
        return data


def blob_name(digest: str) -> str:
    return f"blobs/sha256/{digest_hex(digest)}"


def split_path_name(text: str) -> tuple[Path, str | None]:
    """``PATH[:NAME]``: the longest prefix up to a ``:`` that exists is the path (paths and
    names may both contain colons, e.g. docker-archive:FILE:REPO:TAG)."""
    if os.path.exists(text):
        return Path(text).absolute(), None
    cut = text.find(":")
    while cut != -1:
        if os.path.exists(text[:cut]) and text[cut + 1 :]:
            return Path(text[:cut]).absolute(), text[cut + 1 :]
        cut = text.find(":", cut + 1)
    return Path(text).absolute(), None


def _layout_names(index: dict[str, Any]) -> str:
    names = [str((e.get("annotations") or {}).get(REF_NAME)) for e in index.get("manifests", [])]
    return ", ".join(names)


def resolve_layout(kind: SourceKind, text: str, platform: str) -> ResolvedImage:
    """``oci-archive:FILE[:NAME]`` or ``oci:DIR[:NAME]``."""
    path, name = split_path_name(text)
    bundle = Bundle(path)
    try:
        if not bundle.exists("index.json"):
            raise IgniteError(
                f"{path} is not an OCI image layout (no index.json)",
                hint="docker save output is docker-archive:FILE",
            )
        index = load_json(bundle.read("index.json"), f"{path}: index.json")
        desc = select_by_name(index, name, str(path))
        if desc is None:
            try:
                desc = select_platform(index, platform, str(path))
            except NotFoundError:
                raise NotFoundError(
                    f"{path} holds several images ({_layout_names(index)}) and none is "
                    f"for {platform}",
                    hint="name one after the path: oci-archive:FILE:NAME",
                ) from None
        while is_index(desc, None) or desc.get("mediaType") in (
            MediaType.OCI_INDEX,
            MediaType.DOCKER_LIST,
        ):
            nested = load_json(bundle.read_blob(desc["digest"], "index"), f"{path}: index")
            desc = select_platform(nested, platform, str(path))
        manifest_digest = str(desc["digest"])
        doc = load_json(bundle.read_blob(manifest_digest, "manifest"), f"{path}: manifest")
        manifest = parse_manifest(doc, f"{path}: manifest", desc.get("mediaType"))
        config_bytes = bundle.read_blob(manifest.config_digest, "config")
        layers = tuple(
            LayerDescriptor(lay.digest, lay.media_type, lay.size, location=blob_name(lay.digest))
            for lay in manifest.layers
        )
    finally:
        bundle.close()
    display = f"{kind}:{path}" + (f":{name}" if name else "")
    return ResolvedImage(
        name=display,
        digest=manifest_digest,
        config_digest=manifest.config_digest,
        config=load_json(config_bytes, f"{path}: config"),
        layers=layers,
        size=sum(lay.size for lay in layers),
        source=ImageSource(kind, str(path)),
    )


def resolve_docker_archive(text: str) -> ResolvedImage:
    """``docker-archive:FILE[:REPO:TAG]`` (``docker save``: manifest.json + layer tars)."""
    path, name = split_path_name(text)
    bundle = Bundle(path)
    try:
        if not bundle.exists("manifest.json"):
            raise IgniteError(
                f"{path} is not a docker save archive (no manifest.json)",
                hint="an OCI layout tar is oci-archive:FILE",
            )
        entries = json.loads(bundle.read("manifest.json"))
        entry = _pick_docker_entry(entries, name, path)
        config_bytes = bundle.read(str(entry["Config"]))
        config_digest = sha256_bytes(config_bytes)
        config = load_json(config_bytes, f"{path}: config")
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        layer_names = [str(n) for n in entry.get("Layers") or []]
        if len(diff_ids) != len(layer_names):
            raise IgniteError(
                f"{path}: {len(layer_names)} layers but {len(diff_ids)} diff_ids in the config",
                hint="the archive is corrupt",
            )
        layers = tuple(
            LayerDescriptor(
                str(diff),
                MediaType.OCI_LAYER,
                bundle.size(lname),
                diff_id=str(diff),
                verify_diff_id=True,
                location=lname,
            )
            for diff, lname in zip(diff_ids, layer_names, strict=True)
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise IgniteError(
            f"{path}: malformed manifest.json: {exc!r}", hint="the archive is corrupt"
        ) from exc
    finally:
        bundle.close()
    return ResolvedImage(
        name=f"docker-archive:{path}" + (f":{name}" if name else ""),
        digest=config_digest,
        config_digest=config_digest,
        config=config,
        layers=layers,
        size=sum(lay.size for lay in layers),
        source=ImageSource(SourceKind.DOCKER_ARCHIVE, str(path)),
    )


def _pick_docker_entry(entries: Any, name: str | None, path: Path) -> dict[str, Any]:
    if not isinstance(entries, list) or not entries:
        raise IgniteError(f"{path}: manifest.json lists no image", hint="the archive is corrupt")
    if name is None:
        if len(entries) > 1:
            tags = [t for e in entries for t in e.get("RepoTags") or []]
            raise ValidationError(
                f"{path} holds {len(entries)} images: {', '.join(tags)}",
                hint="name one: docker-archive:FILE:REPO:TAG",
            )
        return dict(entries[0])
    for entry in entries:
        tags = entry.get("RepoTags") or []
        if name in tags or any(t.endswith("/" + name) for t in tags):
            return dict(entry)
    raise NotFoundError(f"{path} has no image tagged {name!r}")


def _synthetic(kind: SourceKind, path: Path, digest: str, media: str, size: int) -> ResolvedImage:
    """A rootfs without image metadata: one layer, a minimal config named by its content."""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(host_platform.machine(), "amd64")
    config: dict[str, Any] = {
        "architecture": arch,
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [digest]},
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    return ResolvedImage(
        name=f"{kind}:{path}",
        digest=digest,
        config_digest=sha256_bytes(config_bytes),
        config=config,
        layers=(LayerDescriptor(digest, media, size, location=str(path)),),
        size=size,
        source=ImageSource(kind, str(path)),
    )


def resolve_tarball(text: str) -> ResolvedImage:
    """``tar:FILE``: a rootfs tarball, plain or gzip/zstd/xz/bzip2 compressed."""
    path = Path(text).absolute()
    if not path.is_file():
        raise NotFoundError(f"{path} does not exist", hint="tar:FILE names a rootfs tarball")
    return _synthetic(
        SourceKind.TAR, path, sha256_file(path), MediaType.OCI_LAYER, path.stat().st_size
    )


def resolve_directory(text: str) -> ResolvedImage:
    """``dir:DIR``: a rootfs directory, named by a digest of its listing and metadata."""
    path = Path(text).absolute()
    if not path.is_dir():
        raise NotFoundError(f"{path} is not a directory", hint="dir:DIR names a rootfs directory")
    listing: list[str] = []
    total = 0
    for rel, st, link in walk_tree(path):
        listing.append(
            f"{rel}\0{st.st_mode:o}\0{st.st_uid}\0{st.st_gid}\0{st.st_size}\0"
            f"{st.st_mtime_ns}\0{link}"
        )
        total += st.st_size if stat.S_ISREG(st.st_mode) else 0
    digest = sha256_bytes("\n".join(listing).encode("utf-8", "surrogateescape"))
    return _synthetic(SourceKind.DIR, path, digest, MediaType.DIRECTORY, total)


def walk_tree(root: Path) -> Iterator[tuple[str, os.stat_result, str]]:
    """Every entry below ``root``, parents first, without following symlinks:
    (relative path, lstat, symlink target or "")."""
    yield ".", root.lstat(), ""
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(root / rel if rel else root) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            child = f"{rel}/{entry.name}" if rel else entry.name
            st = entry.stat(follow_symlinks=False)
            link = os.readlink(entry.path) if entry.is_symlink() else ""
            yield child, st, link
            if entry.is_dir(follow_symlinks=False):
                stack.append(child)
