"""Bench: the microVM kernel from `ignite kernel build` against Debian's kernel (issue 6).

    .venv/bin/python bench/kernel.py [--rounds N] [--workdir DIR]   (root; QEMU; ~2-4 minutes
                                                                     with a finished build)

Builds the kernel with `ignite kernel build --workdir DIR` (default _out/kbuild: a finished
build there is reused, and its build time is read from the build directory), imports Debian's
kernel (linux-image-amd64 as vmlinux) and the default image, then boots the default image under
QEMU TCG with each kernel, alternating, N rounds, with user-mode networking:

- the console log is polled for `ignitevm-init: exec` (kernel boot + the initramfs's /init)
  and for the default image's sshd marker;
- `ignite run --ssh` returns when sshd sends its banner (dropbear makes its host keys then);
- then the first `ignite exec VM true`.

Prints the medians (and min-max) per kernel and the ratio built/Debian.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import build_default_image, fetch_kernel_deb, print_rows

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


class Ignite:
    def __init__(self, work: Path, deb: Path) -> None:
        self.state = work / "state"
        self.config = work / "config.yaml"
        self.config.write_text(
            "apiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\nspec:\n"
            f"  networkPlugin: none\n  vmDefaults:\n    kernel:\n      oci: deb:{deb}\n"
        )

    def __call__(self, *args: str, check: bool = True, timeout: float = 600) -> str:
        argv = [PY, "-m", "ignitevm.cli", "--ignite-config", str(self.config), *args]
        env = {**os.environ, "IGNITE_STATE_DIR": str(self.state)}
        out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
        if check and out.returncode != 0:
            raise SystemExit(f"ignite {' '.join(args)}: {out.stderr}")
        return out.stdout

    def remove_all(self) -> None:
        for uid in self("-q", "ps", "-a", check=False).split():
            self("rm", "-f", uid, check=False)


MARKERS = ("ignitevm-init: exec", "ignitevm-default: sshd")
STAGES = ("init exec", "sshd marker", "run --ssh returned", "first exec")


def _watch(ig: Ignite, run: subprocess.Popen[bytes], start: float) -> list[float]:
    """Poll the console log (every 10 ms) for the markers while `ignite run` goes on."""
    found: list[float] = []
    while len(found) < len(MARKERS):
        logs = list(ig.state.glob("vm/*/console.log"))
        text = logs[0].read_text(errors="replace") if logs else ""
        while len(found) < len(MARKERS) and MARKERS[len(found)] in text:
            found.append(time.perf_counter() - start)
        if run.poll() is not None and len(found) < len(MARKERS):
            raise SystemExit(f"ignite run exited {run.returncode} before {MARKERS[len(found)]!r}")
        time.sleep(0.01)
    return found


def boot(ig: Ignite, kernel: str, name: str) -> list[float]:
    """Seconds from `ignite run --ssh` to each of STAGES."""
    argv = [PY, "-m", "ignitevm.cli", "--ignite-config", str(ig.config), "run",
            "ignitevm/default:latest", "--name", name, "--kernel-image", kernel,
            "--memory", "256MB", "--ssh", "--network-plugin", "user"]  # fmt: skip
    env = {**os.environ, "IGNITE_STATE_DIR": str(ig.state)}
    start = time.perf_counter()
    run = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        times = _watch(ig, run, start)
        if run.wait(timeout=300) != 0:
            raise SystemExit(f"ignite run: {run.stderr.read().decode() if run.stderr else ''}")
        times.append(time.perf_counter() - start)
        ig("exec", name, "true", "--timeout", "120")
        times.append(time.perf_counter() - start)
    finally:
        run.kill()
        run.wait()
        ig("rm", "-f", name, check=False)
    return times


def _stats(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


def _build_seconds(workdir: Path, uid: str) -> str:
    # The build directory of the key whose stored kernel is `uid` (uid = key[:16]).
    record = workdir / f"out-{uid}" / "build-seconds"
    if not record.is_file():
        return "unknown"
    seconds, _, kind = record.read_text().strip().partition(" ")
    return f"{float(seconds):.0f} s" + (f" ({kind} build)" if kind else "")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=ROOT / "_out" / "kbuild")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    deb = fetch_kernel_deb()
    archive = build_default_image()
    work = Path(tempfile.mkdtemp(prefix="ignite-kernelbench-"))
    ig = Ignite(work, deb)
    try:
        started = time.perf_counter()
        built = ig("kernel", "build", "--workdir", str(args.workdir.resolve()), timeout=4 * 3600)
        build_call = time.perf_counter() - started
        uid, built_name, version = built.split()[:3]
        ig("kernel", "import", "--name", "debian:bookworm", f"deb:{deb}")
        ig("image", "import", "--name", "ignitevm/default:latest", f"oci-archive:{archive}")
        kernels = {"debian:bookworm": f"Debian {deb.name.split('_')[1]}", built_name: version}
        times: dict[str, list[list[float]]] = {k: [] for k in kernels}
        for i in range(args.rounds):
            for kernel in kernels:
                times[kernel].append(boot(ig, kernel, f"kb-{i}-{len(times[kernel])}"))
    finally:
        ig.remove_all()
        shutil.rmtree(work, ignore_errors=True)
    rows = [
        ("kernel build (recorded in the build dir)", _build_seconds(args.workdir, uid), "", ""),
        ("`ignite kernel build` this run", f"{build_call:.1f} s",
         "(reused)" if "(reused)" in built else "", ""),
    ]  # fmt: skip
    for n, stage in enumerate(STAGES):
        base = [t[n] for t in times["debian:bookworm"]]
        for kernel, label in kernels.items():
            values = [t[n] for t in times[kernel]]
            ratio = statistics.median(values) / statistics.median(base)
            extra = f"ratio {ratio:.2f}" if kernel != "debian:bookworm" else ""
            rows.append((f"run -> {stage}, {label}", _stats(values), extra, ""))
    rows[-1] = (*rows[-1][:3], f"{args.rounds} rounds, medians (min-max)")
    print_rows(rows)


if __name__ == "__main__":
    main()
