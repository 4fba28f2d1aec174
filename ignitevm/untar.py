"""Extracting a tar from an untrusted source (``ignite cp`` from a guest, a package) without
writing outside the destination or planting device nodes.

Python >= 3.11.4 has extraction filters (PEP 706); Debian 12's python3 is 3.11.2, which has
none, and an unfiltered ``extractall`` follows ``..``, absolute names and links planted by
earlier members. There the same checks run here. Either way device nodes are refused: a
guest's ``/dev/sda``-like node in a host directory would open the host's disk to its owner.
"""

from __future__ import annotations

import copy
import logging
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

from ignitevm.errors import IgniteError

log = logging.getLogger(__name__)

Filter = Callable[[tarfile.TarInfo, str], tarfile.TarInfo | None]
FILTERS = hasattr(tarfile, "tar_filter")  # PEP 706, Python >= 3.11.4


class UnsafeTarError(IgniteError):
    """A member would land outside the destination."""


def extract_safely(
    tar: tarfile.TarFile, dest: Path, member: tarfile.TarInfo | None = None, *, data: bool = False
) -> None:
    """Extract ``member`` (None: every member, streaming) into ``dest``. ``data``: also
    refuse links to absolute paths or out of ``dest`` and drop owners (Python's "data"
    filter); else owners are kept and symlinks stored as they are (the "tar" filter)."""
    check = _checker(data)
    members = [member] if member is not None else tar
    for m in members:
        kept = check(m, str(dest))
        if kept is not None:
            tar.extract(kept, dest, **_no_filter())  # type: ignore[arg-type]


def _no_filter() -> dict[str, object]:
    # the member is filtered already; with PEP 706, say so (else a DeprecationWarning in 3.12+)
    return {"filter": "fully_trusted"} if FILTERS else {}


def _checker(data: bool) -> Filter:
    builtin: Filter | None = None
    if FILTERS:
        builtin = getattr(tarfile, "data_filter" if data else "tar_filter")

    def check(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        if member.isdev():
            log.warning("not extracting device node %s", member.name)
            return None
        try:
            if member.islnk():  # Python's "tar" filter (before 3.11.13) lets these out
                _require_inside(dest, member.linkname.lstrip("/" + os.sep), "it links")
            if builtin is not None:
                return builtin(member, dest)
            return _fallback(member, dest, data)
        except (getattr(tarfile, "FilterError", ValueError), ValueError) as exc:
            raise UnsafeTarError(
                f"refusing {member.name!r}: {exc}", hint="the archive is malicious or broken"
            ) from None

    return check


def _inside(dest: str, path: str) -> bool:
    return os.path.commonpath([dest, os.path.realpath(path)]) == dest


def _require_inside(dest: str, name: str, what: str) -> None:
    """A hard link's target is a name relative to ``dest`` (tarfile joins it to ``dest``)."""
    dest = os.path.realpath(dest)
    if not _inside(dest, os.path.join(dest, name)):
        raise ValueError(f"{what} out of the destination ({name!r})")


def _fallback(member: tarfile.TarInfo, dest: str, data: bool) -> tarfile.TarInfo:
    """Python 3.12's tar/data filters, for Pythons that lack them."""
    dest = os.path.realpath(dest)
    name = member.name.lstrip("/" + os.sep)
    if not _inside(dest, os.path.join(dest, name)):
        raise ValueError("it would be written outside the destination")
    changes: dict[str, object] = {"name": name}
    if member.islnk() or (data and member.issym()):
        link = member.linkname
        if data and os.path.isabs(link):
            raise ValueError(f"it links to the absolute path {link!r}")
        link = link.lstrip("/" + os.sep)
        base = dest if member.islnk() else os.path.dirname(os.path.join(dest, name))
        if not _inside(dest, os.path.join(base, link)):
            raise ValueError(f"it links out of the destination ({member.linkname!r})")
        changes["linkname"] = link if member.islnk() else member.linkname
    if member.isreg() or member.isdir() or member.islnk():
        mode = member.mode & 0o755  # no set-id, no sticky, no write for group and others
        if data and member.isreg() and not mode & 0o100:
            mode &= 0o644  # "data": exec bits only where the owner has one
        changes["mode"] = mode
    if data:  # files become the extracting user's (tarfile chowns only as root)
        changes.update(uid=os.getuid(), gid=os.getgid(), uname="", gname="")
    kept = copy.copy(member)  # TarInfo.replace() is as new as the filters
    for attr, value in changes.items():
        setattr(kept, attr, value)
    return kept
