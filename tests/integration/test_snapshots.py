"""Snapshots, restores and forks of real VMs (docs/snapshots.md): what a fork keeps of its source
(a file in tmpfs, a file on disk, a running process) and what is its own (disk writes, address,
hostname, random bytes, ports); pause, suspend and resume; the refusals; a `snapshot create`
killed midway. The cni VMs run in the test's own "host" namespace (tests/integration/
test_network_cni.py's Env)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import Ignite
from tests.integration.test_network_cni import Env, env, ping

__all__ = ["env"]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not Path("/usr/lib/cni/bridge").exists(), reason="no CNI plugins"),
]

# a tmpfs file, a disk file, a process in the background, and a web server on 8080 that says
# the hostname; then the exec returns (the background jobs keep running)
PREPARE = (
    "mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && echo in-tmpfs > /mnt/t/f && "
    "echo on-disk > /root/d && sync && "
    "(sleep 100000 & echo $! > /mnt/t/pid) && "
    "(while true; do printf 'HTTP/1.0 200 OK\\r\\n\\r\\n%s\\n' $(hostname) | nc -l -p 8080; done"
    " >/dev/null 2>&1 &) && cat /mnt/t/pid"
)


def _cli(ignite: Ignite, e: Env) -> Ignite:
    extra = {**ignite.env, "IGNITE_CNI_CONF_DIR": str(e.conf_dir)}
    return Ignite(state_dir=ignite.state_dir, config=ignite.config, env=extra)


def _sh(cli: Ignite, e: Env, vm: str, command: str) -> str:
    return e.in_host(lambda: cli("exec", vm, command)).stdout


def _remove_snapshots(cli: Ignite) -> None:
    for uid in cli("-q", "snapshot", "ls", check=False).stdout.split():
        cli("snapshot", "rm", "-f", uid, check=False)


def test_forks_are_their_own_machines(ignite: Ignite, vm_name: str, env: Env) -> None:
    cli = _cli(ignite, env)
    try:
        env.in_host(lambda: cli("run", "--name", vm_name, "--network-plugin", "cni", "--ssh",
                                "--memory", "256MB", "--size", "1GB"))  # fmt: skip
        pid = _sh(cli, env, vm_name, PREPARE).strip()
        src_ip = _sh(cli, env, vm_name, "ip -4 -o addr show eth0").split()[3]

        out = env.in_host(lambda: cli("snapshot", "create", vm_name, "--name", f"{vm_name}-s"))
        assert "paused" in out.stdout
        snap = json.loads(cli("inspect", "snapshot", f"{vm_name}-s").stdout)
        assert snap["status"]["machine"]["memory"] == "256MB"

        forked = env.in_host(lambda: cli("fork", vm_name, "-n", "2")).stdout.split()
        a, b = forked[1], forked[3]  # "UID NAME" lines
        assert (a, b) == (f"{vm_name}-1", f"{vm_name}-2")
        seen = {}
        for vm in (a, b):
            lines = _sh(cli, env, vm, f"cat /mnt/t/f /root/d; kill -0 {pid} && echo alive; "
                        "hostname; ip -4 -o addr show eth0; head -c16 /dev/urandom | od -An -tx1"
                        ).splitlines()  # fmt: skip
            assert lines[:3] == ["in-tmpfs", "on-disk", "alive"]
            assert lines[3] == vm  # its own hostname
            seen[vm] = (lines[4].split()[3], lines[5].strip())
        ips = {ip for ip, _ in seen.values()}
        assert len(ips) == 2 and src_ip not in ips  # its own address, really used
        assert seen[a][1] != seen[b][1]  # its own random numbers
        for ip in ips:
            assert ping(env, ip.split("/")[0], timeout=5)

        _sh(cli, env, a, "echo mine > /root/only-a; sync")
        assert "gone" in _sh(cli, env, b, "cat /root/only-a 2>/dev/null || echo gone")
        assert "gone" in _sh(cli, env, vm_name, "cat /root/only-a 2>/dev/null || echo gone")

        # a VM from the snapshot with a port of its own: the server in its memory answers
        port = 20000 + int.from_bytes(os.urandom(2)) % 20000
        env.in_host(lambda: cli("run", "--snapshot", f"{vm_name}-s", "--name", f"{vm_name}-w",
                                "-p", f"{port}:8080"))  # fmt: skip
        deadline, answer = time.monotonic() + 30, ""
        while f"{vm_name}" not in answer and time.monotonic() < deadline:
            answer = env.host("curl", "-s", "-m", "3", f"http://127.0.0.1:{port}/", check=False)
        assert vm_name in answer

        refused = cli("snapshot", "rm", f"{vm_name}-s", check=False)
        assert refused.returncode != 0 and "in use by" in refused.stderr
        started = time.monotonic()
        wrong = env.in_host(lambda: cli("run", "--snapshot", f"{vm_name}-s", "--memory", "1GB",
                                        check=False))  # fmt: skip
        assert wrong.returncode != 0 and time.monotonic() - started < 10
        assert "is a machine with memory 256MB" in wrong.stderr and "hint:" in wrong.stderr
    finally:
        for vm in cli("-q", "ps", "-a", check=False).stdout.split():
            env.in_host(lambda vm=vm: cli("rm", "-f", vm, check=False))  # type: ignore[misc]
        _remove_snapshots(cli)


def test_pause_suspend_resume_and_a_killed_snapshot(ignite: Ignite, vm_name: str) -> None:
    try:
        ignite("run", "--name", vm_name, "--network-plugin", "none", "--memory", "256MB",
               "--size", "1GB")  # fmt: skip
        pid = ignite("exec", vm_name, "sleep 100000 >/dev/null 2>&1 & echo $!").stdout.strip()

        ignite("pause", vm_name)
        assert "Paused" in ignite("ps").stdout
        ignite("unpause", vm_name)
        assert "alive" in ignite("exec", vm_name, f"kill -0 {pid} && echo alive").stdout

        ignite("suspend", vm_name)
        assert "Suspended" in ignite("ps", "-a").stdout
        assert vm_name not in ignite("ps").stdout
        ignite("start", vm_name)
        assert "alive" in ignite("exec", vm_name, f"kill -0 {pid} && echo alive").stdout

        # `snapshot create` killed at several points: never a half snapshot, the VM runs on
        env_ = {**os.environ, "IGNITE_STATE_DIR": str(ignite.state_dir)}
        argv = [sys.executable, "-m", "ignitevm.cli", "--ignite-config", str(ignite.config),
                "snapshot", "create", vm_name]  # fmt: skip
        for delay in (0.25, 0.4, 0.6):
            child = subprocess.Popen(argv, env=env_, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)  # fmt: skip
            time.sleep(delay)
            child.send_signal(signal.SIGKILL)
            child.wait()
            for uid in ignite("-q", "snapshot", "ls").stdout.split():
                snap = ignite.state_dir / "snapshot" / uid
                assert {p.name for p in snap.iterdir()} >= {"state", "memory", "layer.qcow2"}
            assert "alive" in ignite("exec", vm_name, f"kill -0 {pid} && echo alive").stdout
        assert not list((ignite.state_dir / "tmp").glob("snapshot-*"))
        vm_dir = ignite.state_dir / "vm" / str(ignite.inspect(vm_name)["metadata"]["uid"])  # type: ignore[index]
        assert not (vm_dir / "snapshot.pending").exists()
        ignite("stop", vm_name)
        ignite("start", vm_name)  # its disk chain is whole after all that
        assert "on-disk" in ignite("exec", vm_name, "echo on-disk").stdout
    finally:
        ignite("rm", "-f", vm_name, check=False)
        _remove_snapshots(ignite)
