"""Benchmark: ignited's own cost on top of the VMs it manages.

1. Commit-to-running latency minus boot time: ignited follows a git repository (a real
   `git daemon` on 127.0.0.1) at a short --interval; a commit adds a VM manifest; the time from
   the push to ignited reporting the VM started (its metrics), minus the time `ignite run` took
   for the same VM just before (they alternate, so both see the load of a shared machine); also
   the time from the push to the VM object existing (ignited's reaction, no boot in it).
2. One `ignited daemon --once` pass over 50 manifests whose VMs already match (created stopped
   with `running: false`, so nothing boots). Goal: under 1 s (the pass; the process, Python
   start-up included, is printed too).

Run as root: ``.venv/bin/python bench/gitops.py [--rounds N] [--state-dir DIR --config FILE]``.
Without --state-dir a temporary state directory gets Debian's kernel and the default image (as
the integration tests' session fixture). Every VM, daemon and temp dir it makes is removed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMAGE = "ignitevm/default:latest"
GIT_ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.com"}  # fmt: skip


def manifest(name: str, running: bool | None = None) -> str:
    text = (
        f"apiVersion: ignite.weave.works/v1alpha4\nkind: VM\nmetadata:\n  name: {name}\n"
        f"spec:\n  image:\n    oci: {IMAGE}\n  memory: 192MB\n  diskSize: 1GB\n"
    )
    return text + (f"status:\n  running: {str(running).lower()}\n" if running is not None else "")


class Env:
    def __init__(self, state: Path, config: Path) -> None:
        self.state, self.config = state, config
        self.env = {**os.environ, "IGNITE_STATE_DIR": str(state), **GIT_ENV}

    def ignite(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "ignitevm.cli", "--ignite-config", str(self.config), *args]
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, check=check)

    def ignited_argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "ignitevm.cli.ignited", *args,
                "--ignite-config", str(self.config), "--network-plugin", "none"]  # fmt: skip

    def remove_all(self, prefix: str) -> None:
        import json

        vms = json.loads(self.ignite("ps", "-a", "-o", "json").stdout)
        uids = [v["metadata"]["uid"] for v in vms if v["metadata"]["name"].startswith(prefix)]
        if uids:
            self.ignite("rm", "-f", *uids, check=False)


def prepare_state(work: Path) -> Env:
    deb = subprocess.run([sys.executable, "-m", "ignitevm.kernel.apt",
                          str(REPO / "_out" / "cache" / "debs")],
                         capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    archive = REPO / "_out" / "images" / "default.oci.tar"
    subprocess.run([sys.executable, str(REPO / "images" / "build.py"), "--output",
                    f"oci-archive:{archive}", "--cache", str(REPO / "_out" / "cache" / "debs")],
                   check=True, capture_output=True)  # fmt: skip
    config = work / "config.yaml"
    config.write_text(
        "apiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\nspec:\n"
        f"  networkPlugin: none\n  vmDefaults:\n    kernel:\n      oci: deb:{deb}\n"
    )
    env = Env(work / "state", config)
    env.ignite("kernel", "import", f"deb:{deb}")
    env.ignite("image", "import", "--name", IMAGE, f"oci-archive:{archive}")
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_metric(port: int, name: str, above: float, timeout: float = 300) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if metric(port, name) > above:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {name} > {above}")


def time_ignite_run(env: Env, name: str) -> float:
    t0 = time.monotonic()
    env.ignite("run", "--name", name, "--memory", "192MB", "--size", "1GB",
               "--network-plugin", "none")  # fmt: skip
    elapsed = time.monotonic() - t0
    env.ignite("rm", "-f", name)
    return elapsed


@contextmanager
def git_daemon(base: Path) -> Iterator[str]:
    bare, work = base / "vms.git", base / "work"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    port = free_port()
    daemon = subprocess.Popen(["git", "daemon", "--export-all", f"--base-path={base}",
                               f"--port={port}", "--listen=127.0.0.1", "--reuseaddr", str(base)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(0.5)
        yield f"git://127.0.0.1:{port}/vms.git"
    finally:
        daemon.terminate()
        daemon.wait(10)


def commit(env: Env, work: Path, files: dict[str, str | None]) -> None:
    for name, text in files.items():
        if text is None:
            (work / name).unlink()
        else:
            (work / name).write_text(text)
    git = ["git", "-C", str(work)]
    subprocess.run([*git, "add", "-A"], check=True, env=env.env)
    subprocess.run([*git, "commit", "-qm", "bench", "--allow-empty"], check=True, env=env.env)
    subprocess.run([*git, "push", "-q", str(work.parent / "vms.git"), "HEAD:main"], check=True,
                   env=env.env)  # fmt: skip


def wait_file(path: Path, timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {path}")
        time.sleep(0.02)
    return time.monotonic()


def time_commit_to_running(
    env: Env, base: Path, rounds: int, interval: str
) -> tuple[list[float], list[float], list[float]]:
    """Per round: (`ignite run` of the VM, commit -> VM running, commit -> VM created). The
    baseline run and the commit alternate, so both see the same load on a shared machine."""
    from ignitevm.api import uid_from_name

    runs, latencies, reactions = [], [], []
    with git_daemon(base) as url:
        work = base / "work"
        commit(env, work, {"README": "vms\n"})
        port = free_port()
        log = open(base / "ignited.log", "w")  # noqa: SIM115 (closed below)
        daemon = subprocess.Popen(
            env.ignited_argv("gitops", url, "--interval", interval,
                             "--metrics-addr", f"127.0.0.1:{port}"),
            env=env.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_metric(port, "ignited_reconcile_passes_total", 0, 60)
            for i in range(rounds):
                runs.append(time_ignite_run(env, f"bench-run-{i}"))
                starts = metric(port, 'ignited_reconcile_actions_total{action="start"}')
                removes = metric(port, 'ignited_reconcile_actions_total{action="remove"}')
                name = f"bench-git-{i}"
                commit(env, work, {"vm.yaml": manifest(name)})
                t0 = time.monotonic()
                created = env.state / "vm" / uid_from_name(name) / "metadata.json"
                reactions.append(wait_file(created) - t0)
                t1 = wait_metric(port, 'ignited_reconcile_actions_total{action="start"}', starts)
                latencies.append(t1 - t0)
                commit(env, work, {"vm.yaml": None})
                wait_metric(port, 'ignited_reconcile_actions_total{action="remove"}', removes)
        finally:
            daemon.terminate()
            daemon.wait(120)
            log.close()
    return runs, latencies, reactions


def time_50_in_sync(env: Env, base: Path, count: int) -> tuple[float, float, float, float]:
    """(first pass creating them, in-sync pass, its process wall time, prune pass)."""
    root = base / "manifests"
    root.mkdir()
    for i in range(count):
        (root / f"vm{i:02d}.yaml").write_text(manifest(f"bench-sync-{i:02d}", running=False))
    create = pass_seconds(env, root)
    t0 = time.monotonic()
    in_sync = pass_seconds(env, root, expect="0 actions done")
    wall = time.monotonic() - t0
    shutil.rmtree(root)
    root.mkdir()
    prune = pass_seconds(env, root)
    return create, in_sync, wall, prune


def pass_seconds(env: Env, root: Path, expect: str = "") -> float:
    out = subprocess.run(env.ignited_argv("daemon", "--manifest-dir", str(root), "--once"),
                         env=env.env, capture_output=True, text=True, timeout=1800)  # fmt: skip
    found = re.search(r"pass: .* \(([\d.]+) s\)", out.stderr)
    if out.returncode != 0 or found is None or expect not in out.stderr:
        raise SystemExit(f"ignited failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--interval", default="1s", help="ignited's --interval (default 1s)")
    parser.add_argument("--state-dir", type=Path)
    parser.add_argument("--config", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (VMs)")
    base = Path(tempfile.mkdtemp(prefix="bench-gitops-"))
    env: Env | None = None
    try:
        if args.state_dir and args.config:
            env = Env(args.state_dir, args.config)
        else:
            env = prepare_state(base)
        runs, latencies, reactions = time_commit_to_running(env, base, args.rounds, args.interval)
        create, in_sync, wall, prune = time_50_in_sync(env, base, args.count)
    finally:
        if env is not None:
            env.remove_all("bench-")
        shutil.rmtree(base, ignore_errors=True)
    boot = statistics.median(runs)
    latency = statistics.median(latencies)
    overheads = [lat - run for lat, run in zip(latencies, runs, strict=True)]
    rows = [
        ("ignite run (create + boot), median s", f"{boot:.2f}", "baseline",
         " ".join(f"{t:.2f}" for t in runs)),
        ("commit -> running via ignited, median s", f"{latency:.2f}", "",
         " ".join(f"{t:.2f}" for t in latencies)),
        ("  minus boot (ignited's overhead), median s", f"{statistics.median(overheads):.2f}",
         f"<= interval ({args.interval}) + 1 s",
         "per round: " + " ".join(f"{t:.2f}" for t in overheads)),
        ("commit -> VM created by ignited, median s", f"{statistics.median(reactions):.2f}",
         f"<= interval ({args.interval}) + 1 s", " ".join(f"{t:.2f}" for t in reactions)),
        (f"pass over {args.count} in-sync VMs, s", f"{in_sync:.3f}", "< 1 s",
         "PASS" if in_sync < 1 else "FAIL"),
        ("  same, whole `ignited --once` process, s", f"{wall:.2f}", "", "Python start-up incl."),
        (f"first pass creating {args.count} stopped VMs, s", f"{create:.2f}", "", ""),
        (f"pass pruning {args.count} VMs, s", f"{prune:.2f}", "", ""),
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    header = ("measure", "value", "goal", "notes")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    for row in (header, *rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
