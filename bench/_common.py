"""What the benches share: timing, the kernel package and default image they boot, the table."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def timed(fn: Callable[[], object]) -> float:
    """Seconds ``fn()`` took."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_of(n: int, fn: Callable[[], object]) -> float:
    return statistics.median(timed(fn) for _ in range(n))


def fetch_kernel_deb() -> Path:
    """Debian's kernel package (apt-get download, cached in _out/cache/debs)."""
    fetch = [PY, "-m", "ignitevm.kernel.apt", str(ROOT / "_out/cache/debs")]
    return Path(subprocess.run(fetch, check=True, capture_output=True, text=True).stdout.strip())


def build_default_image() -> Path:
    """The default image as an OCI archive (images/build.py; ~1 s with a warm cache)."""
    archive = ROOT / "_out/images/default.oci.tar"
    subprocess.run([PY, str(ROOT / "images/build.py"), "--output", f"oci-archive:{archive}"],
                   check=True, capture_output=True)  # fmt: skip
    return archive


def print_rows(rows: Sequence[Sequence[str]]) -> None:
    """Columns padded to their widest cell, two spaces apart."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
