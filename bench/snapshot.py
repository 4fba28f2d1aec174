"""Bench: snapshots, restores and forks against a cold boot in the same run (issue 11).

    .venv/bin/python bench/snapshot.py [--rounds N]      (root; QEMU; ~2 minutes)

1. `ignite run --ssh` -> first successful `ignite exec` (cold) vs `ignite run --snapshot` ->
   first exec (restore). Goals: restore <= 0.6 s and <= 0.20x cold.
2. `ignite snapshot create` of a 256 MB guest: how long the guest was paused (goal <= 0.2 s)
   and what it stores against the guest's used memory (RAM - MemFree; goal <= used + 10%).
3. `ignite fork VM -n 5` -> all five answer an exec (goal <= 3 s).
4. Host memory per forked VM: its QEMU's PSS against the cold VM's (goal <= 0.5x).
The restore and the fork are measured through the library (ignitevm.Client) too: the same
work without the CLI's Python processes.
VMs use user-mode networking: nothing outside 127.0.0.0/8 is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import build_default_image, fetch_kernel_deb, print_rows

PY = sys.executable


class Bench:
    def __init__(self, base: Path, deb: Path) -> None:
        self.state = base / "state"
        self.config = base / "config.yaml"
        self.config.write_text(
            "apiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\nspec:\n"
            f"  networkPlugin: user\n  vmDefaults:\n    kernel:\n      oci: deb:{deb}\n"
        )
        self.env = {**os.environ, "IGNITE_STATE_DIR": str(self.state)}

    def ignite(self, *args: str) -> str:
        argv = [str(Path(PY).parent / "ignite"), "--ignite-config", str(self.config), *args]
        out = subprocess.run(argv, env=self.env, capture_output=True, text=True,
                             stdin=subprocess.DEVNULL)  # fmt: skip
        if out.returncode != 0:
            raise SystemExit(f"ignite {' '.join(args)} failed:\n{out.stderr}")
        return out.stdout

    def runtime(self, name: str) -> dict[str, object]:
        uid = json.loads(self.ignite("inspect", "vm", name))["metadata"]["uid"]
        data: dict[str, object] = json.loads((self.state / "vm" / uid / "runtime.json").read_text())
        return data


def until_exec(b: Bench, *create: str, name: str) -> float:
    """Seconds from the command that makes VM ``name`` to its first successful exec."""
    start = time.perf_counter()
    b.ignite(*create)
    b.ignite("exec", name, "true")
    return time.perf_counter() - start


def pss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (QEMU, disks, the jail)")
    deb = fetch_kernel_deb()
    archive = build_default_image()
    work = Path(tempfile.mkdtemp(prefix="ignite-bench-snap-"))
    b = Bench(work, deb)
    rows: list[tuple[str, str, str, str]] = []
    try:
        b.ignite("kernel", "import", f"deb:{deb}")
        b.ignite("image", "import", "--name", "ignitevm/default:latest", f"oci-archive:{archive}")
        vm = ("ignitevm/default:latest", "--ssh", "--memory", "256MB")
        colds = []
        for i in range(args.rounds):
            colds.append(until_exec(b, "run", *vm, "--name", f"cold-{i}", name=f"cold-{i}"))
            if i:
                b.ignite("rm", "-f", f"cold-{i}")
        cold = statistics.median(colds)
        src = "cold-0"
        b.ignite("exec", src, "sleep 100000 >/dev/null 2>&1 &")  # a process the copies keep
        meminfo = b.ignite("exec", src, "cat /proc/meminfo")
        free_kb = int(re.search(r"MemFree:\s+(\d+)", meminfo).group(1))  # type: ignore[union-attr]
        used_mib = 256 - free_kb / 1024

        pauses, stored, images = [], [], []
        for i in range(args.rounds):
            out = b.ignite("snapshot", "create", src, "--name", f"snap-{i}")
            pauses.append(float(re.search(r"paused ([\d.]+) s", out).group(1)))  # type: ignore[union-attr]
            snap = json.loads(b.ignite("inspect", "snapshot", f"snap-{i}"))
            d = b.state / "snapshot" / snap["metadata"]["uid"]
            images.append((d / "memory").stat().st_blocks * 512 / (1 << 20))
            stored.append(sum(p.stat().st_blocks * 512 for p in d.iterdir()) / (1 << 20))
        rows.append(("snapshot create: guest paused", f"{statistics.median(pauses):.3f} s",
                     "", "goal <= 0.2 s"))  # fmt: skip
        kept = statistics.median(stored)
        rows.append(("snapshot create: stored", f"{kept:.0f} MiB",
                     f"guest used {used_mib:.0f} MiB (RAM 256 - MemFree); RAM image "
                     f"{statistics.median(images):.0f} MiB",
                     f"ratio {kept / used_mib:.2f} (goal <= 1.10)"))  # fmt: skip

        restores = []
        for i in range(args.rounds):
            restores.append(until_exec(b, "run", "--snapshot", "snap-0", "--name", f"r-{i}",
                                       name=f"r-{i}"))  # fmt: skip
            b.ignite("rm", "-f", f"r-{i}")
        restore = statistics.median(restores)
        rows.append(("run --snapshot -> first exec", f"{restore:.2f} s",
                     f"cold run --ssh -> first exec {cold:.2f} s",
                     f"ratio {restore / cold:.2f} (goals <= 0.6 s, <= 0.20)"))  # fmt: skip

        # the same through the library: no CLI processes, what is left is the VMM and TCG
        import ignitevm

        client = ignitevm.Client(state_dir=b.state, config=b.config)
        lib_restores = []
        for i in range(args.rounds):
            start = time.perf_counter()
            with client.vms.run(snapshot="snap-0", name=f"l-{i}") as copy:
                copy.exec("true", check=True)
                lib_restores.append(time.perf_counter() - start)
        lib_restore = statistics.median(lib_restores)
        rows.append(("library: vms.run(snapshot=) -> exec", f"{lib_restore:.2f} s",
                     f"cold run --ssh -> first exec {cold:.2f} s",
                     f"ratio {lib_restore / cold:.2f} (goals <= 0.6 s, <= 0.20)"))  # fmt: skip
        start = time.perf_counter()
        copies = client.vms.get(src).fork(5, name_prefix="lfork-")
        with ThreadPoolExecutor(5) as pool:
            list(pool.map(lambda c: c.exec("true", check=True), copies))
        lib_fork = time.perf_counter() - start
        rows.append(("library: fork(5) -> all five exec", f"{lib_fork:.2f} s", "", "goal <= 3 s"))
        for c in copies:
            c.remove(force=True)

        start = time.perf_counter()
        names = b.ignite("-q", "fork", src, "-n", "5", "--name-prefix", "fork-").split()
        with ThreadPoolExecutor(5) as pool:
            list(pool.map(lambda n: b.ignite("exec", n, "true"), names))
        fork = time.perf_counter() - start
        rows.append(("fork -n 5 -> all five exec", f"{fork:.2f} s", "", "goal <= 3 s"))
        time.sleep(1)
        fork_pss = statistics.mean(pss_kb(int(str(b.runtime(n)["vmm_pid"]))) for n in names)
        cold_pss = pss_kb(int(str(b.runtime(src)["vmm_pid"])))
        rows.append(("host memory per fork (QEMU PSS)", f"{fork_pss / 1024:.0f} MiB",
                     f"cold-booted VM {cold_pss / 1024:.0f} MiB",
                     f"ratio {fork_pss / cold_pss:.2f} (goal <= 0.5)"))  # fmt: skip
    finally:
        for uid in b.ignite("-q", "ps", "-a").split():
            b.ignite("rm", "-f", uid)
        for uid in b.ignite("-q", "snapshot", "ls").split():
            b.ignite("snapshot", "rm", "-f", uid)
        shutil.rmtree(work, ignore_errors=True)
    print_rows(rows)


if __name__ == "__main__":
    main()
