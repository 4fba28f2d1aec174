"""Benchmark: importing a ~100 MB three-layer image into an ext4 base disk.

ignitevm (resolve_image + unpack_image + build_base_image from an oci-archive, cold blob cache)
against the tool chain it replaces, on the same image in the same run:
``skopeo copy oci-archive:... oci:DIR:tag`` + ``umoci unpack`` + ``mkfs.ext4 -d``.
The ``rootless`` column is ignitevm's import as an unprivileged user (the process's effective
uid is nobody's for the whole side): owners and modes recorded while unpacking, written into
the image with debugfs after mkfs (docs/images.md "Imports without root").

Run as root: ``.venv/bin/python bench/import.py [--rounds N] [--keep]``. Goal: ratio <= 1.0.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from _common import timed

from ignitevm import proc
from ignitevm.disk.base import build_base_image, measure_tree, plan_size
from ignitevm.oci import FetchOptions, resolve_image, unpack_image

REPO = Path(__file__).resolve().parent.parent

TOOLS = ("skopeo", "umoci", "mkfs.ext4")
# (paths copied into the layer, paths deleted in it: whiteouts)
LAYERS: list[tuple[list[str], list[str]]] = [
    (["/usr/lib/python3.11"], []),
    (
        ["/usr/share/man/man3", "/usr/share/man/man7", "/usr/share/man/man8", "/usr/share/doc/git"],
        ["/usr/lib/python3.11/test"],
    ),
    (["/usr/bin/buildah", "/usr/bin/docker-registry"], ["/usr/lib/python3.11/email"]),
]


def build_image(work: Path) -> Path:
    """A three-layer image built by umoci (repack makes the whiteouts); as oci-archive."""
    layout = work / "layout"
    proc.run(["umoci", "init", "--layout", layout])
    proc.run(["umoci", "new", "--image", f"{layout}:bench"])
    for copies, deletions in LAYERS:
        bundle = work / "build-bundle"
        proc.run(["umoci", "unpack", "--image", f"{layout}:bench", bundle], timeout=600)
        rootfs = bundle / "rootfs"
        for src in copies:
            dest = rootfs / src.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if os.path.isdir(src):
                shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)
            else:
                shutil.copy2(src, dest)
        for gone in deletions:
            shutil.rmtree(rootfs / gone.lstrip("/"), ignore_errors=True)
        proc.run(["umoci", "repack", "--image", f"{layout}:bench", bundle], timeout=600)
        shutil.rmtree(bundle)
    proc.run(["umoci", "gc", "--layout", layout])
    archive = work / "image.oci.tar"
    proc.run(["tar", "-C", layout, "-cf", archive, "."])
    shutil.rmtree(layout)
    return archive


def run_ignitevm(archive: Path, work: Path) -> dict[str, float]:
    opts = FetchOptions(cache_dir=work / "cache")
    rootfs = work / "rootfs"
    times: dict[str, float] = {}
    image = None

    def resolve() -> None:
        nonlocal image
        image = resolve_image(f"oci-archive:{archive}", opts)

    times["fetch/resolve"] = timed(resolve)
    assert image is not None
    resolved = image
    owners = None

    def unpack() -> None:
        nonlocal owners
        owners = unpack_image(resolved, rootfs, opts)  # None as root

    times["unpack"] = timed(unpack)
    times["mkfs"] = timed(lambda: build_base_image(rootfs, work / "image.ext4", owners=owners))
    return times


NOBODY = 65534


def run_rootless(archive: Path, work: Path) -> dict[str, float]:
    """ignitevm's import with the effective uid and gid of nobody (seteuid: root gets them
    back), which picks the unprivileged path as a user's import does."""
    os.chown(work, NOBODY, NOBODY)
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        return run_ignitevm(archive, work)
    finally:
        os.seteuid(0)
        os.setegid(0)


def run_baseline(archive: Path, work: Path) -> dict[str, float]:
    layout, bundle = work / "oci", work / "bundle"
    times = {
        "fetch/resolve": timed(
            lambda: proc.run(
                ["skopeo", "copy", "-q", f"oci-archive:{archive}", f"oci:{layout}:bench"],
                timeout=600,
            )
        ),
        "unpack": timed(
            lambda: proc.run(["umoci", "unpack", "--image", f"{layout}:bench", bundle], timeout=600)
        ),
    }
    rootfs = bundle / "rootfs"

    def mkfs() -> None:
        # Same size and options as ignitevm's, so only the tools differ.
        size, ratio = plan_size(measure_tree(rootfs))
        out = work / "baseline.ext4"
        with open(out, "wb") as f:
            f.truncate(size)
        proc.run(
            [
                "mkfs.ext4",
                "-q",
                "-F",
                "-t",
                "ext4",
                "-b",
                "4096",
                "-I",
                "256",
                "-i",
                str(ratio),
                "-J",
                "size=4",
                "-L",
                "ignite-image",
                "-E",
                "root_owner=0:0",
                "-d",
                rootfs,
                out,
            ],
            timeout=600,
        )

    times["mkfs"] = timed(mkfs)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="runs of each side (best counts)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if os.geteuid() != 0:
        print("run as root (umoci unpack and mkfs need to keep owners)", file=sys.stderr)
        return 2
    missing = [t for t in TOOLS if proc.find_tool(t) is None]
    if missing:
        print(
            f"missing tools: {', '.join(missing)} (apt-get install skopeo umoci e2fsprogs)",
            file=sys.stderr,
        )
        return 2
    (REPO / "_out").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-import-", dir=REPO / "_out"))
    try:
        archive = build_image(work)
        work.chmod(0o755)  # the rootless side reads the archive as nobody
        archive.chmod(0o644)
        rootfs_mb = 0.0
        best: dict[str, dict[str, float]] = {}
        for round_ in range(args.rounds):
            # Alternate the order so neither side always gets the warmer page cache.
            sides = [("ignitevm", run_ignitevm), ("rootless", run_rootless),
                     ("baseline", run_baseline)]  # fmt: skip
            for name, fn in sides if round_ % 2 == 0 else sides[::-1]:
                side_dir = work / f"{name}-{round_}"
                side_dir.mkdir()
                proc.run(["sync"])
                times = fn(archive, side_dir)
                times["total"] = sum(times.values())
                if name == "ignitevm":
                    usage = measure_tree(side_dir / "rootfs")
                    rootfs_mb = usage.blocks * 4096 / 1e6
                prev = best.get(name)
                if prev is None or times["total"] < prev["total"]:
                    best[name] = times
                shutil.rmtree(side_dir)
        print(
            f"image: {archive.stat().st_size / 1e6:.0f} MB oci-archive, {len(LAYERS)} layers, "
            f"rootfs {rootfs_mb:.0f} MB; best of {args.rounds} rounds"
        )
        print(f"{'step':<16}{'ignitevm s':>12}{'rootless s':>12}{'baseline s':>12}"
              f"{'ratio':>8}{'rootless/root':>15}")  # fmt: skip
        for step in ("fetch/resolve", "unpack", "mkfs", "total"):
            ours, user, theirs = (best[side][step] for side in ("ignitevm", "rootless", "baseline"))
            print(f"{step:<16}{ours:>12.2f}{user:>12.2f}{theirs:>12.2f}{ours / theirs:>8.2f}"
                  f"{user / ours:>15.2f}")  # fmt: skip
        print("baseline: skopeo copy oci-archive: -> oci:, umoci unpack, mkfs.ext4 -d (as root)")
        print("rootless: mkfs includes writing owners and modes with debugfs")
        return 0
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
