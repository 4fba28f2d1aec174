"""Networking and access through the real CLI (issue 4's acceptance): CNI with Debian's plugins,
`--ssh`, `-p`, `ignite exec/ssh/cp`, pings both ways, VM to VM, guest to a host server, and five
VMs through start, stop, kill -9, restart and rm with no duplicate IP and nothing left behind.

The "host" is a network namespace the test owns (entered with nsenter, which keeps the mount
namespace so the VMs' named netns stay visible): the CNI bridge, its addresses and every
iptables rule live and die with it."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import Ignite

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/usr/lib/cni/bridge").exists(), reason="no CNI plugins"),
    pytest.mark.skipif(shutil.which("nsenter") is None, reason="no nsenter"),
]


@dataclass
class NetHost:
    ns: str
    subnet: str  # e.g. "10.201.7."
    data_dir: Path
    ignite: Ignite

    def run(self, *argv: str, check: bool = True, timeout: float = 120,
            input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
        return subprocess.run(["nsenter", f"--net=/run/netns/{self.ns}", *argv], check=check,
                              capture_output=True, timeout=timeout, input=input)  # fmt: skip

    def cli(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        argv = [sys.executable, "-m", "ignitevm.cli", "--ignite-config", str(self.ignite.config)]
        proc = self.run("env", f"IGNITE_STATE_DIR={self.ignite.state_dir}",
                        f"IGNITE_CNI_CONF_DIR={self.data_dir.parent / 'net.d'}",
                        *argv, *args, check=False, timeout=timeout)  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(f"ignite {args}: {proc.returncode}\n{proc.stderr.decode()}")
        return proc.stdout.decode() + (proc.stderr.decode() if not check else "")

    def ip_of(self, vm: str) -> str:
        data = json.loads(self.cli("inspect", "vm", vm))
        ips: list[str] = data["status"]["network"]["ipAddresses"]
        assert ips, data
        return ips[0]


@pytest.fixture
def nethost(ignite: Ignite, tmp_path: Path) -> Iterator[NetHost]:
    tag = secrets.token_hex(3)
    octet = secrets.randbelow(250) + 2
    conf = tmp_path / "net.d"
    conf.mkdir()
    data_dir = tmp_path / "ipam"
    (conf / "10-test.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0",
        "name": f"iga-net-{tag}",
        "plugins": [
            {"type": "bridge", "bridge": f"iga{tag}", "isGateway": True, "ipMasq": True,
             "capabilities": {"ips": True},
             "ipam": {"type": "host-local", "subnet": f"10.201.{octet}.0/24",
                      "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(data_dir)}},
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        ],
    }))  # fmt: skip
    ns = f"iga-host-{tag}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    host = NetHost(ns, f"10.201.{octet}.", data_dir, ignite)
    try:
        host.run("ip", "link", "set", "lo", "up")
        yield host
    finally:
        for uid in ignite("-q", "ps", "-a", check=False).stdout.split():
            host.cli("rm", "-f", uid, check=False)
        subprocess.run(["ip", "netns", "delete", ns], check=False)


def _ignite_netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith("ignite-")}


def _vm_dir(host: NetHost, vm: str) -> Path:
    uid = json.loads(host.cli("inspect", "vm", vm))["metadata"]["uid"]
    return host.ignite.state_dir / "vm" / uid


def test_ssh_exec_cp_ports_and_pings(nethost: NetHost, vm_name: str, tmp_path: Path) -> None:
    motd = tmp_path / "motd"
    motd.write_text(f"copied for {vm_name}\n")
    # a host port already in use is an error before the VM starts
    blocker = subprocess.Popen(["nsenter", f"--net=/run/netns/{nethost.ns}", sys.executable, "-c",
                                "import socket,time; s=socket.create_server(('0.0.0.0', 2223)); "
                                "time.sleep(60)"])  # fmt: skip
    try:
        time.sleep(0.5)
        out = nethost.cli("run", "--name", vm_name + "-x", "-p", "2223:22",
                          "--network-plugin", "cni", check=False)  # fmt: skip
        assert "2223" in out and "not free" in out, out
    finally:
        blocker.kill()
    assert vm_name + "-x" not in nethost.cli("ps")
    # ports without a network (the test configuration's default plugin is none) are refused
    assert "need a network" in nethost.cli("create", "-p", "2224:22", check=False)

    nethost.cli("run", "--name", vm_name, "--ssh", "-p", "2222:22", "--memory", "256MB",
                "--copy-files", f"{motd}:/etc/motd", "--network-plugin", "cni")  # fmt: skip
    ps = nethost.cli("ps")
    assert "0.0.0.0:2222->22/tcp" in ps
    ip = nethost.ip_of(vm_name)
    assert ip.startswith(nethost.subnet)

    kernel = json.loads(nethost.cli("inspect", "kernel", nethost.ignite.kernel_name()))
    assert nethost.cli("exec", vm_name, "uname", "-r").strip() == kernel["status"]["version"]
    assert nethost.cli("exec", vm_name, "cat", "/etc/motd") == motd.read_text()
    # flags after the VM are the remote command's, global ones included (Ignite's exec)
    assert nethost.cli("exec", "-q", vm_name, "echo", "-q", "--log-level", "x") == (
        "-q --log-level x\n"
    )
    assert nethost.run(*_exec(nethost, vm_name, "exit 3"), check=False).returncode == 3
    # every module of the kernel is there for modprobe (the kernel's shared modules disk)
    nethost.cli("exec", vm_name, "modprobe", "br_netfilter")
    assert "br_netfilter" in nethost.cli("exec", vm_name, "cat", "/proc/modules")

    key = _vm_dir(nethost, vm_name) / "id_ed25519"
    ssh = nethost.run("ssh", "-i", str(key), "-p", "2222", "-o", "StrictHostKeyChecking=no",
                      "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                      "root@127.0.0.1", "hostname")  # fmt: skip
    assert ssh.stdout.decode().strip() == vm_name

    # cp both ways, recursive, byte-identical, modes kept
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "blob").write_bytes(os.urandom(1 << 20))
    (src / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (src / "run.sh").chmod(0o750)
    nethost.cli("cp", str(src), f"{vm_name}:/root/")
    back = tmp_path / "back"
    nethost.cli("cp", f"{vm_name}:/root/tree", str(back))
    assert (back / "sub" / "blob").read_bytes() == (src / "sub" / "blob").read_bytes()
    assert (back / "run.sh").stat().st_mode & 0o777 == 0o750

    # pings both ways (busybox ping on the host: no iputils needed)
    gateway = nethost.subnet + "1"
    assert nethost.run("busybox", "ping", "-c", "1", "-W", "3", ip, check=False).returncode == 0
    assert "1 packets received" in nethost.cli("exec", vm_name, "ping", "-c", "1", "-W", "3",
                                               gateway)  # fmt: skip

    # the guest reaches a server on the host (nc with numbers: static busybox wget needs NSS)
    server = subprocess.Popen(["nsenter", f"--net=/run/netns/{nethost.ns}", sys.executable, "-m",
                               "http.server", "--bind", gateway, "18081",
                               "--directory", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(1)
        reply = nethost.cli("exec", vm_name,
                            f"(printf 'GET /motd HTTP/1.0\\r\\n\\r\\n'; sleep 2) | "
                            f"nc {gateway} 18081")  # fmt: skip
        assert f"copied for {vm_name}" in reply
    finally:
        server.kill()

    # every exec/cp above shared the one connection `run --ssh` opened; stop closes it
    d = _vm_dir(nethost, vm_name)
    assert _ssh_masters(d), "no shared SSH connection"
    nethost.cli("stop", vm_name)
    assert not _ssh_masters(d)


def _ssh_masters(vm_dir: Path) -> list[int]:
    """pids of ssh processes whose control socket belongs to ``vm_dir``."""
    from ignitevm.spawn.sshmux import control_path

    needle = f"ControlPath={control_path(vm_dir)}".encode()
    pids = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and needle in (p / "cmdline").read_bytes():
                pids.append(int(p.name))
        except OSError:
            continue
    return pids


def _exec(host: NetHost, vm: str, command: str) -> list[str]:
    return [
        "env",
        f"IGNITE_STATE_DIR={host.ignite.state_dir}",
        sys.executable,
        "-m",
        "ignitevm.cli",
        "--ignite-config",
        str(host.ignite.config),
        "exec",
        vm,
        command,
    ]


def test_two_vms_reach_each_other(nethost: NetHost, vm_name: str) -> None:
    a, b = f"{vm_name}-a", f"{vm_name}-b"
    for name in (a, b):
        nethost.cli("run", "--name", name, "--ssh", "--memory", "192MB",
                    "--network-plugin", "cni")  # fmt: skip
    ip_b = nethost.ip_of(b)
    assert ip_b != nethost.ip_of(a)
    assert "1 packets received" in nethost.cli("exec", a, "ping", "-c", "1", "-W", "3", ip_b)
    # kill -9 of the supervisor: the cleanup of the next command closes the shared connection
    d = _vm_dir(nethost, a)
    assert _ssh_masters(d)
    rt = json.loads((d / "runtime.json").read_text())
    os.kill(int(rt["supervisor_pid"]), signal.SIGKILL)
    time.sleep(0.5)
    nethost.cli("rm", "-f", a)
    assert not _ssh_masters(d)


def _leases(host: NetHost) -> list[str]:
    return sorted(
        p.name for d in host.data_dir.glob("*") for p in d.iterdir()
        if re.fullmatch(r"[\d.]+", p.name)
    )  # fmt: skip


def _chains(host: NetHost) -> list[str]:
    out = host.run("iptables-save", check=False).stdout.decode()
    return re.findall(r"^:(CNI-[0-9a-f]{6,}\S*)", out, re.MULTILINE)


def test_five_vms_start_stop_kill9_restart_rm(nethost: NetHost, vm_name: str) -> None:
    names = [f"{vm_name}-{i}" for i in range(5)]
    procs = [
        subprocess.Popen(
            [
                "nsenter",
                f"--net=/run/netns/{nethost.ns}",
                "env",
                f"IGNITE_STATE_DIR={nethost.ignite.state_dir}",
                f"IGNITE_CNI_CONF_DIR={nethost.data_dir.parent / 'net.d'}",
                sys.executable,
                "-m",
                "ignitevm.cli",
                "--ignite-config",
                str(nethost.ignite.config),
                "run",
                "--name",
                n,
                "--memory",
                "160MB",
                "--network-plugin",
                "cni",
                "--boot-timeout",
                "400",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in names
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()
    first = [nethost.ip_of(n) for n in names]
    assert len(set(first)) == 5, first
    assert sorted(_leases(nethost)) == sorted(first)

    nethost.cli("stop", *names[:2])
    assert len(_leases(nethost)) == 3
    for n in names[2:]:  # kill -9 of the supervisors: the next command cleans up
        rt = json.loads((_vm_dir(nethost, n) / "runtime.json").read_text())
        os.kill(int(rt["supervisor_pid"]), signal.SIGKILL)
    time.sleep(1)
    for n in names:
        nethost.cli("start", n, "--boot-timeout", "400")
    again = [nethost.ip_of(n) for n in names]
    assert len(set(again)) == 5, again
    assert again == first  # each VM kept its address (Ignite #660 must not happen)

    uids = {_vm_dir(nethost, n).name for n in names}
    nethost.cli("rm", "-f", *names)
    assert not {f"ignite-{uid}" for uid in uids} & _ignite_netns()
    assert _leases(nethost) == []
    assert _chains(nethost) == []
    links = nethost.run("ip", "-o", "link").stdout.decode()
    assert "veth" not in links


def test_restart_on_another_plugin_after_kill9_undoes_the_old_network(
    nethost: NetHost, vm_name: str
) -> None:
    """A VM killed (-9) on cni and started again with --network-plugin user: the start undoes
    the cni run with the cni plugin (what runtime.json recorded), not with the new one."""
    nethost.cli("run", "--name", vm_name, "--memory", "160MB", "--network-plugin", "cni")
    d = _vm_dir(nethost, vm_name)
    assert len(_leases(nethost)) == 1 and _chains(nethost)
    rt = json.loads((d / "runtime.json").read_text())
    os.kill(int(rt["supervisor_pid"]), signal.SIGKILL)
    time.sleep(0.5)
    nethost.cli("start", vm_name, "--network-plugin", "user")
    assert f"ignite-{d.name}" not in _ignite_netns()
    assert _leases(nethost) == [] and _chains(nethost) == []
    assert json.loads((d / "runtime.json").read_text())["network"] == "user"
    nethost.cli("rm", "-f", vm_name)
    assert f"ignite-{d.name}" not in _ignite_netns()
    assert _leases(nethost) == [] and _chains(nethost) == []


def test_teardown_trusts_no_damaged_file(nethost: NetHost, vm_name: str) -> None:
    """A corrupt runtime.json after kill -9, and a VM directory deleted under a running VM:
    rm still gives back the lease, the chains and the namespace."""
    import shutil

    a, b = f"{vm_name}-a", f"{vm_name}-b"
    for name in (a, b):
        nethost.cli("run", "--name", name, "--memory", "160MB", "--network-plugin", "cni")
    da, db = _vm_dir(nethost, a), _vm_dir(nethost, b)
    assert len(_leases(nethost)) == 2
    rt = json.loads((da / "runtime.json").read_text())
    os.kill(int(rt["supervisor_pid"]), signal.SIGKILL)
    time.sleep(0.5)
    (da / "runtime.json").write_text('{"supervisor_pid": 1, "vmm"')  # truncated
    nethost.cli("rm", a)
    assert f"ignite-{da.name}" not in _ignite_netns() and len(_leases(nethost)) == 1
    shutil.rmtree(db)  # under the running VM
    nethost.cli("rm", "-f", db.name)
    assert f"ignite-{db.name}" not in _ignite_netns()
    assert _leases(nethost) == [] and _chains(nethost) == []
