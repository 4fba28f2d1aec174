"""Bench: the cost of networking and host->guest throughput (issue 4).

    .venv/bin/python bench/network.py [--rounds N]      (root; QEMU; CNI plugins; ~2 minutes)

1. `ignite run --ssh` (CNI) to the first successful `ignite exec VM true`, against `ignite run`
   without a network (returns at the boot marker) in the same run: the difference is what
   networking and SSH cost (goal <= 1.0 s).
2. Throughput host -> guest: 64 MiB over raw TCP (busybox nc in the guest) and through
   `ignite exec` (SSH, as `ignite cp` uses), each against the same transfer over loopback.
3. A warm `ignite exec VM true` (over the VM's shared SSH connection) against the same command
   with `-i KEY`, which makes a connection of its own.

Everything runs in a namespace of the bench's own (the CNI bridge, addresses and iptables rules
live and die with it)."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import build_default_image, fetch_kernel_deb, median_of, print_rows

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PAYLOAD = 64 << 20


class Host:
    def __init__(self, work: Path, deb: Path) -> None:
        tag = secrets.token_hex(3)
        self.ns = f"igb-host-{tag}"
        self.state = work / "state"
        self.config = work / "config.yaml"
        self.config.write_text(
            "apiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\nspec:\n"
            f"  networkPlugin: none\n  vmDefaults:\n    kernel:\n      oci: deb:{deb}\n"
        )
        conf = work / "net.d"
        conf.mkdir()
        (conf / "10-bench.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0", "name": f"igb-net-{tag}",
            "plugins": [
                {"type": "bridge", "bridge": f"igb{tag}", "isGateway": True, "ipMasq": True,
                 "ipam": {"type": "host-local", "subnet": "10.202.0.0/24",
                          "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(work / "ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
            ],
        }))  # fmt: skip
        self.env = [f"IGNITE_STATE_DIR={self.state}", f"IGNITE_CNI_CONF_DIR={conf}"]
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        self.run("ip", "link", "set", "lo", "up")

    def run(self, *argv: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
        done: subprocess.CompletedProcess[bytes] = subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.ns}", *argv], capture_output=True, **kw
        )  # type: ignore[call-overload]
        return done

    def ignite(self, *args: str, check: bool = True, **kw: object) -> str:
        out = self.run("env", *self.env, str(Path(PY).parent / "ignite"), "--ignite-config",
                       str(self.config), *args, **kw)  # fmt: skip
        if check and out.returncode != 0:
            raise SystemExit(f"ignite {' '.join(args)}: {out.stderr.decode()}")
        return str(out.stdout.decode())

    def close(self) -> None:
        for uid in self.ignite("-q", "ps", "-a", check=False).split():
            self.ignite("rm", "-f", uid, check=False)
        subprocess.run(["ip", "netns", "delete", self.ns], check=False)


def net_cost(h: Host, rounds: int) -> tuple[float, float]:
    plain, networked = [], []
    for i in range(rounds):
        start = time.perf_counter()
        h.ignite("run", "ignitevm/default:latest", "--name", f"plain-{i}", "--memory", "256MB")
        plain.append(time.perf_counter() - start)
        h.ignite("rm", "-f", f"plain-{i}")
        start = time.perf_counter()
        h.ignite("run", "ignitevm/default:latest", "--name", f"net-{i}", "--memory", "256MB",
                 "--ssh", "--network-plugin", "cni")  # fmt: skip
        h.ignite("exec", f"net-{i}", "true", "--timeout", "60")  # waits for sshd's banner
        networked.append(time.perf_counter() - start)
        h.ignite("rm", "-f", f"net-{i}")
    return statistics.median(plain), statistics.median(networked)


def _send(h: Host, host: str, port: int) -> float:
    code = (
        "import socket,sys,time\n"
        f"s=socket.create_connection(({host!r},{port}),timeout=30)\n"
        "b=bytes(1<<20); t=time.perf_counter()\n"
        f"[s.sendall(b) for _ in range({PAYLOAD >> 20})]\n"
        "s.shutdown(socket.SHUT_WR); s.recv(1); print(time.perf_counter()-t)\n"
    )
    return float(h.run(PY, "-c", code, check=True).stdout)


def throughput(h: Host) -> dict[str, float]:
    h.ignite("run", "ignitevm/default:latest", "--name", "tput", "--memory", "256MB", "--ssh",
             "--network-plugin", "cni")  # fmt: skip
    ip = json.loads(h.ignite("inspect", "vm", "tput"))["status"]["network"]["ipAddresses"][0]
    listener = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{h.ns}", "env", *h.env, str(Path(PY).parent / "ignite"),
         "--ignite-config", str(h.config), "exec", "tput", "nc -l -p 5001 >/dev/null"],
    )  # fmt: skip
    time.sleep(2)
    raw = _send(h, ip, 5001)
    listener.wait(timeout=60)
    warm = median_of(5, lambda: h.ignite("exec", "tput", "true"))
    d = h.state / "vm" / json.loads(h.ignite("inspect", "vm", "tput"))["metadata"]["uid"]
    # -i bypasses the shared connection: the same command making a connection of its own
    own = ("exec", "-i", str(d / "id_ed25519"), "tput", "true")
    fresh = median_of(5, lambda: h.ignite(*own))
    data = os.urandom(PAYLOAD)
    start = time.perf_counter()
    h.ignite("exec", "tput", "cat >/dev/null", input=data)
    ssh = time.perf_counter() - start
    # loopback baseline: the same sender against a local sink
    sink = socket.create_server(("127.0.0.1", 0))
    port = sink.getsockname()[1]
    code = (
        f"import socket; s=socket.create_connection(('127.0.0.1',{port}));"
        f"import time; b=bytes(1<<20); t=time.perf_counter();"
        f"[s.sendall(b) for _ in range({PAYLOAD >> 20})]; s.close();"
        f"print(time.perf_counter()-t)"
    )
    sender = subprocess.Popen([PY, "-c", code], stdout=subprocess.PIPE)
    conn, _ = sink.accept()
    while conn.recv(1 << 20):
        pass
    loop = float(sender.communicate()[0])
    conn.close()
    sink.close()
    mib = PAYLOAD / (1 << 20)
    return {"raw": mib / raw, "ssh": mib / ssh, "loopback": mib / loop, "warm": warm,
            "fresh": fresh}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    deb = fetch_kernel_deb()
    archive = build_default_image()
    work = Path(tempfile.mkdtemp(prefix="ignite-netbench-"))
    h = Host(work, deb)
    try:
        h.ignite("kernel", "import", f"deb:{deb}")
        h.ignite("image", "import", "--name", "ignitevm/default:latest", f"oci-archive:{archive}")
        plain, networked = net_cost(h, args.rounds)
        t = throughput(h)
    finally:
        h.close()
        shutil.rmtree(work, ignore_errors=True)
    rows = [
        ("ignite run (no network) -> boot", f"{plain:.2f} s", "", ""),
        ("ignite run --ssh (cni) -> first exec", f"{networked:.2f} s",
         f"cost {networked - plain:+.2f} s", "goal <= 1.0 s"),
        ("host->guest TCP (busybox nc)", f"{t['raw']:.0f} MiB/s",
         f"loopback {t['loopback']:.0f} MiB/s", f"ratio {t['raw'] / t['loopback']:.3f}"),
        ("host->guest via ignite exec (SSH)", f"{t['ssh']:.1f} MiB/s", "", "64 MiB"),
        ("ignite exec VM true, warm", f"{t['warm']:.2f} s",
         f"own connection (-i) {t['fresh']:.2f} s",
         "shared SSH connection"),
    ]  # fmt: skip
    print_rows(rows)


if __name__ == "__main__":
    main()
