"""Download a Debian kernel package with apt (``ignite kernel import apt:linux-image-amd64``).

``python -m ignitevm.kernel.apt CACHE_DIR [PACKAGE]`` prints the path of the downloaded .deb
(the same as hack/fetch-kernel.sh; test fixtures use it).
"""

from __future__ import annotations

import logging
import re
import shutil
import sys
import tempfile
from pathlib import Path

from ignitevm import proc
from ignitevm.errors import IgniteError, ValidationError

log = logging.getLogger(__name__)

DEFAULT_PACKAGE = "linux-image-amd64"
_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+\Z")
_DEPENDS = re.compile(r"^\s*Depends:\s*(linux-image-\S+)\s*$", re.MULTILINE)


def resolve_package(package: str) -> str:
    """A meta package (linux-image-amd64) -> the versioned kernel package it depends on."""
    if not _NAME.match(package):
        raise ValidationError(f"invalid Debian package name {package!r}")
    out = proc.output(
        [proc.require_tool("apt-cache"), "depends", package],
        hint="run apt-get update; is the package name right?",
    )
    deps: list[str] = [
        d for d in _DEPENDS.findall(out) if d != package and not d.endswith("-unsigned")
    ]
    if re.search(r"\d+\.\d+", package) or not deps:
        return package  # already versioned (or nothing to resolve)
    return deps[0]


def download_package(package: str, cache: Path) -> Path:
    """The .deb of ``package`` (a meta package is resolved first) in ``cache``; reused if there."""
    resolved = resolve_package(package)
    cache.mkdir(parents=True, exist_ok=True)
    existing = sorted(cache.glob(f"{resolved}_*.deb"))
    if existing:
        return existing[-1]
    apt_get = proc.require_tool("apt-get")
    # A partial download must never look like a cached package: fetch into a temp dir, then move.
    with tempfile.TemporaryDirectory(dir=cache, prefix=".apt-") as tmp:
        proc.run([apt_get, "download", "-q", resolved], cwd=tmp, hint="run apt-get update")
        debs = sorted(Path(tmp).glob("*.deb"))
        if not debs:
            raise IgniteError(f"apt-get download {resolved} produced no .deb")
        target = cache / debs[0].name
        shutil.move(debs[0], target)
    log.info("downloaded %s", target)
    return target


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.stderr.write("usage: python -m ignitevm.kernel.apt CACHE_DIR [PACKAGE]\n")
        sys.exit(2)
    try:
        path = download_package(
            sys.argv[2] if len(sys.argv) == 3 else DEFAULT_PACKAGE, Path(sys.argv[1])
        )
    except IgniteError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(1)
    sys.stdout.write(f"{path}\n")
