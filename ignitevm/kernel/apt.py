"""Debian kernel packages fetched with apt: the `apt:PACKAGE` kernel source."""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from pathlib import Path

from ignitevm import proc
from ignitevm.errors import IgniteError

log = logging.getLogger(__name__)

_DEPENDS = re.compile(r"^\s*Depends:\s*(linux-image-\S+)\s*$", re.MULTILINE)


def resolve_package(package: str) -> str:
    """A meta package (linux-image-amd64) -> the real kernel package it depends on."""
    text = proc.output([proc.require_tool("apt-cache"), "depends", package], check=False)
    match = _DEPENDS.search(text)
    if match:
        return match.group(1)
    if re.match(r"^linux-image-\d", package):
        return package
    raise IgniteError(
        f"apt knows no kernel package {package!r}",
        hint="run apt-get update, or import a .deb with deb:FILE",
    )


def download_package(package: str, cache_dir: Path) -> Path:
    """The .deb of ``package`` (a meta package is resolved) in ``cache_dir``, downloaded once."""
    real = resolve_package(package)
    cache_dir.mkdir(parents=True, exist_ok=True)
    existing = sorted(cache_dir.glob(f"{real}_*.deb"))
    if existing:
        return existing[-1]
    tmp = Path(tempfile.mkdtemp(prefix=".apt-", dir=cache_dir))
    try:
        log.info("downloading %s with apt", real)
        proc.run(
            [proc.require_tool("apt-get"), "download", "-q", real],
            cwd=tmp,
            hint="check that apt can reach Debian's archive (apt-get update)",
        )
        debs = sorted(tmp.glob("*.deb"))
        if not debs:
            raise IgniteError(f"apt-get download {real} produced no .deb")
        target = cache_dir / debs[0].name
        debs[0].rename(target)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    """`python -m ignitevm.kernel.apt OUTDIR [PACKAGE]`: print the path of the downloaded .deb."""
    import sys

    outdir = Path(sys.argv[1])
    package = sys.argv[2] if len(sys.argv) > 2 else "linux-image-amd64"
    sys.stdout.write(f"{download_package(package, outdir)}\n")


if __name__ == "__main__":
    main()
