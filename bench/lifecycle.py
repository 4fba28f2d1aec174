"""Bench: the VM lifecycle against baselines measured in the same run (issue 3).

    .venv/bin/python bench/lifecycle.py [--rounds N]      (root; QEMU; ~3 minutes)

1. `ignite run` to the guest's init marker vs the bare QEMU command line with the same kernel,
   initramfs and disk (goal: ratio <= 1.10); and jailed (the default as root) vs unjailed
   (configuration `jail: false`), alternating (goal: ratio <= 1.05).
2. `ignite create` on a 100 MB and a 1 GB image (goal: both under 150 ms, i.e. O(1)); baseline:
   `python -c "import pydantic, click"` (the interpreter start-up every CLI call pays).
3. `ignite ps -a` with 30 stopped VMs vs `python3 -c pass` (goal: under 250 ms).
4. Host memory of one running VM (QEMU + supervisor) beyond its guest RAM.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import build_default_image, fetch_kernel_deb, median_of, print_rows, timed

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
MARKER = b"ignitevm-init: exec "


class Bench:
    def __init__(self, base: Path, deb: Path) -> None:
        self.state = base / "state"
        self.config = base / "config.yaml"
        text = (
            "apiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\nspec:\n"
            f"  networkPlugin: none\n  vmDefaults:\n    kernel:\n      oci: deb:{deb}\n"
        )
        self.config.write_text(text)
        self.unjailed = base / "config-unjailed.yaml"
        self.unjailed.write_text(text + "  jail: false\n")
        self.env = {**os.environ, "IGNITE_STATE_DIR": str(self.state)}

    def ignite(self, *args: str, config: Path | None = None) -> str:
        argv = [str(Path(PY).parent / "ignite"), "--ignite-config", str(config or self.config),
                *args]  # fmt: skip
        out = subprocess.run(argv, env=self.env, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"ignite {' '.join(args)} failed:\n{out.stderr}")
        return out.stdout

    def vm_dir(self, name: str) -> Path:
        uid = json.loads(self.ignite("inspect", "vm", name))["metadata"]["uid"]
        return self.state / "vm" / uid


def run_cmd(*argv: str) -> Callable[[], object]:
    return lambda: subprocess.run(argv, check=True, capture_output=True)


def bare_boot(vm_dir: Path, work: Path) -> float:
    """The supervisor's exact QEMU command line, started by hand on a fresh overlay."""
    from ignitevm.network.base import Attachment
    from ignitevm.spawn import read_plan
    from ignitevm.vmm.qemuargs import build_qemu_argv

    plan = read_plan(vm_dir)
    disk = plan.machine.disks[0].path
    fresh = work / "bare.qcow2"
    backing = json.loads(
        subprocess.run(["qemu-img", "info", "--output=json", str(disk)], check=True,
                       capture_output=True, text=True).stdout
    )  # fmt: skip
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                    backing["backing-filename"], str(fresh), str(backing["virtual-size"])],
                   check=True)  # fmt: skip
    from dataclasses import replace

    # the same disks (the kernel's read-only modules disk too), with a fresh root overlay
    disks = (replace(plan.machine.disks[0], path=fresh), *plan.machine.disks[1:])
    spec = replace(plan.machine, disks=disks, vm_dir=work)
    argv = build_qemu_argv(spec, Attachment())
    start = time.perf_counter()
    qemu = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=work)
    assert qemu.stdout is not None
    seen = b""
    try:
        while MARKER not in seen:
            chunk = os.read(qemu.stdout.fileno(), 65536)
            if not chunk:
                raise SystemExit(f"bare QEMU exited: {seen[-500:]!r}")
            seen = seen[-4096:] + chunk
        return time.perf_counter() - start
    finally:
        qemu.kill()
        qemu.wait()
        fresh.unlink()


def boot_ratio(b: Bench, rounds: int, work: Path) -> tuple[float, float, float]:
    """Medians of (ignite run jailed, unjailed, bare QEMU), alternating in each round."""
    runs, unjailed, bares = [], [], []
    for i in range(rounds):
        for config, times in ((b.config, runs), (b.unjailed, unjailed)):
            name = f"bench-boot-{i}-{len(times)}-{config.stem}"
            argv = ("run", "ignitevm/default:latest", "--name", name, "--memory", "256MB")
            times.append(timed(lambda argv=argv, c=config: b.ignite(*argv, config=c)))
            d = b.vm_dir(name)
            b.ignite("kill", name)
            if config == b.config:
                bares.append(bare_boot(d, work))
            b.ignite("rm", name)
    return statistics.median(runs), statistics.median(unjailed), statistics.median(bares)


def make_image(b: Bench, work: Path, size_mb: int) -> str:
    root = work / f"img{size_mb}"
    (root / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    (root / "sbin").mkdir()
    (root / "sbin" / "init").symlink_to("/bin/busybox")
    data = root / "data"
    data.mkdir()
    chunk = os.urandom(1 << 20)
    for i in range(size_mb // 8):
        with open(data / f"f{i}", "wb") as f:
            for _ in range(8):
                f.write(chunk)
    name = f"bench/size{size_mb}:latest"
    b.ignite("image", "import", "--name", name, f"dir:{root}")
    shutil.rmtree(root)
    return name


def create_times(b: Bench, image: str, n: int = 5) -> float:
    times = []
    for i in range(n):
        name = f"bench-c-{image.split('/')[1].split(':')[0]}-{i}"
        times.append(timed(lambda name=name: b.ignite("create", image, "--name", name)))
        b.ignite("rm", name)
    return statistics.median(times)


def memory_overhead(b: Bench) -> tuple[float, float, float]:
    """(QEMU RSS beyond the guest RAM mapping, QEMU RSS, supervisor RSS) in MiB."""
    b.ignite("run", "ignitevm/default:latest", "--name", "bench-mem", "--memory", "256MB")
    time.sleep(2)
    rt = json.loads((b.vm_dir("bench-mem") / "runtime.json").read_text())
    qemu_rss, guest_rss = _smaps(int(rt["vmm_pid"]), 256 * 1024)
    sup = _rss_kb(int(rt["supervisor_pid"]))
    b.ignite("rm", "-f", "bench-mem")
    return (qemu_rss - guest_rss) / 1024, qemu_rss / 1024, sup / 1024


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _smaps(pid: int, guest_kb: int) -> tuple[int, int]:
    """(total RSS, RSS of the guest RAM mapping) in kB, from /proc/PID/smaps."""
    total = guest = 0
    size = 0
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if line.startswith("Size:"):
            size = int(line.split()[1])
        elif line.startswith("Rss:"):
            rss = int(line.split()[1])
            total += rss
            if size >= guest_kb:
                guest += rss
    return total, guest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (QEMU, disks)")
    deb = fetch_kernel_deb()
    archive = build_default_image()
    work = Path(tempfile.mkdtemp(prefix="ignite-bench-"))
    rows: list[tuple[str, str, str, str]] = []
    b = Bench(work, deb)
    try:
        b.ignite("kernel", "import", f"deb:{deb}")
        b.ignite("image", "import", "--name", "ignitevm/default:latest", f"oci-archive:{archive}")
        run, unjailed, bare = boot_ratio(b, args.rounds, work)
        rows.append(("ignite run -> init marker", f"{run:.2f} s", f"bare QEMU {bare:.2f} s",
                     f"ratio {run / bare:.2f} (goal <= 1.10)"))  # fmt: skip
        rows.append(("ignite run -> init, jailed", f"{run:.2f} s", f"unjailed {unjailed:.2f} s",
                     f"ratio {run / unjailed:.2f} (goal <= 1.05)"))  # fmt: skip
        startup = median_of(5, run_cmd(PY, "-c", "import pydantic, click"))
        for size in (100, 1024):
            image = make_image(b, work, size)
            t = create_times(b, image)
            rows.append((f"ignite create, {size} MB image", f"{t * 1000:.0f} ms",
                         f"python+pydantic+click {startup * 1000:.0f} ms",
                         "goal < 150 ms"))  # fmt: skip
        for i in range(30):
            b.ignite("create", "ignitevm/default:latest", "--name", f"bench-ps-{i}")
        ps = median_of(10, lambda: b.ignite("ps", "-a"))
        nothing = median_of(10, run_cmd("python3", "-c", "pass"))
        rows.append(("ignite ps -a, 30 stopped VMs", f"{ps * 1000:.0f} ms",
                     f"python3 -c pass {nothing * 1000:.0f} ms",
                     f"ratio {ps / nothing:.1f} (goal < 250 ms)"))  # fmt: skip
        over, qemu, sup = memory_overhead(b)
        rows.append(("host memory beyond guest RAM", f"{over + sup:.0f} MiB",
                     f"QEMU RSS {qemu:.0f} MiB, supervisor {sup:.0f} MiB",
                     "256 MiB guest"))  # fmt: skip
    finally:
        for uid in b.ignite("-q", "ps", "-a").split():
            b.ignite("rm", "-f", uid)
        shutil.rmtree(work, ignore_errors=True)
    print_rows(rows)


if __name__ == "__main__":
    main()
