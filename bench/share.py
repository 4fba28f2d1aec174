"""Bench: a host directory shared with --share (virtio-9p) against `ignite cp`, 64 MiB each way.

    .venv/bin/python bench/share.py [--rounds N]      (root; QEMU; ~2 minutes)

One VM (user networking, --ssh, --share DIR:/mnt/share). Into the guest: `ignite exec VM cp
/mnt/share/in.bin /root/` against `ignite cp in.bin VM:/root/`; out of it: `ignite exec VM cp
/root/in.bin /mnt/share/` against `ignite cp VM:/root/in.bin out.bin`. Wall-clock times of the
commands a user runs, medians of the rounds; a warm `ignite exec VM true` is shown too (what
each exec costs besides the copy). Every copy is checked byte for byte.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import build_default_image, fetch_kernel_deb, print_rows

PY = sys.executable
PAYLOAD = 64 << 20
VM = "share-bench"


class Ignite:
    def __init__(self, work: Path) -> None:
        self.env = {**os.environ, "IGNITE_STATE_DIR": str(work / "state")}

    def __call__(self, *args: str) -> str:
        out = subprocess.run([PY, "-m", "ignitevm.cli", *args], env=self.env,
                             capture_output=True, text=True)  # fmt: skip
        if out.returncode != 0:
            raise SystemExit(f"ignite {' '.join(args)}: {out.stderr}")
        return out.stdout

    def timed(self, *args: str) -> float:
        start = time.perf_counter()
        self(*args)
        return time.perf_counter() - start


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def measure(ig: Ignite, share: Path, local: Path, rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in ("share in", "cp in", "share out", "cp out")}
    digest = _sha(share / "in.bin")
    guest_sum = "sha256sum /root/in.bin | cut -c1-64"
    for _ in range(rounds):
        times["share in"].append(ig.timed("exec", VM, "cp /mnt/share/in.bin /root/in.bin"))
        assert ig("exec", VM, guest_sum).strip() == digest
        ig("exec", VM, "rm /root/in.bin")
        times["cp in"].append(ig.timed("cp", str(local / "in.bin"), f"{VM}:/root/in.bin"))
        assert ig("exec", VM, guest_sum).strip() == digest
        times["share out"].append(ig.timed("exec", VM, "cp /root/in.bin /mnt/share/out.bin"))
        assert _sha(share / "out.bin") == digest
        (share / "out.bin").unlink()
        times["cp out"].append(ig.timed("cp", f"{VM}:/root/in.bin", str(local / "out.bin")))
        assert _sha(local / "out.bin") == digest
        (local / "out.bin").unlink()
        ig("exec", VM, "rm /root/in.bin")
    result = {k: statistics.median(v) for k, v in times.items()}
    result["exec"] = statistics.median(ig.timed("exec", VM, "true") for _ in range(5))
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    deb, archive = fetch_kernel_deb(), build_default_image()
    work = Path(tempfile.mkdtemp(prefix="ignite-sharebench-"))
    ig = Ignite(work)
    share, local = work / "share", work / "local"
    share.mkdir()
    local.mkdir()
    data = os.urandom(PAYLOAD)
    (share / "in.bin").write_bytes(data)
    (local / "in.bin").write_bytes(data)
    try:
        ig("kernel", "import", f"deb:{deb}")
        ig("image", "import", "--name", "ignitevm/default:latest", f"oci-archive:{archive}")
        ig("run", "ignitevm/default:latest", "--name", VM, "-k", f"deb:{deb}", "--memory",
           "512MB", "--ssh", "--network-plugin", "user",
           "--share", f"{share}:/mnt/share")  # fmt: skip
        r = measure(ig, share, local, args.rounds)
    finally:
        subprocess.run([PY, "-m", "ignitevm.cli", "rm", "-f", VM], env=ig.env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    mib = PAYLOAD / (1 << 20)
    rows = [("64 MiB", "--share (9p)", "ignite cp", "share/cp")]
    for way in ("in", "out"):
        s, c = r[f"share {way}"], r[f"cp {way}"]
        label = "host -> guest disk" if way == "in" else "guest disk -> host"
        rows.append((label, f"{s:.2f} s {mib / s:.0f} MiB/s", f"{c:.2f} s {mib / c:.0f} MiB/s",
                     f"{s / c:.2f}"))  # fmt: skip
    rows.append(("ignite exec VM true (warm)", f"{r['exec']:.2f} s", "", ""))
    print_rows(rows)
    print(f"medians of {args.rounds} rounds; TCG guest, 1 vCPU, 512 MiB")


if __name__ == "__main__":
    main()
