"""Extra interfaces with real namespaces and a real guest (issue 14 item 8): a VM annotated
``ignite.weave.works/interface/ext0: tc-redirect`` is run with --wait=false; a veth pair is
made in the test's host namespace and one end, with its address, is moved into the VM's
namespace and named ext0; the guest sees it as eth1 with that MAC and address, and pings
cross it both ways. The plugin level: join and unjoin give the interface back as it was.

The "host" is a network namespace the test owns (tests/integration/test_access.py NetHost);
the veth's addresses (10.202.N.0/24) live only in it and in the VM's namespace."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.test_access import NetHost, nethost
from tests.integration.test_network_cni import Env, env, sh

__all__ = ["env", "nethost"]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/usr/lib/cni/bridge").exists(), reason="no CNI plugins"),
]


def _manifest(path: Path, name: str, *interfaces: str) -> Path:
    notes = "".join(f'    "ignite.weave.works/interface/{i}": "tc-redirect"\n' for i in interfaces)
    path.write_text(
        "apiVersion: ignite.weave.works/v1alpha4\nkind: VM\nmetadata:\n"
        f"  name: {name}\n  annotations:\n{notes}"
        "spec:\n  image:\n    oci: ignitevm/default:latest\n  memory: 256MB\n"
        "  diskSize: 1GB\n  ssh: true\n"
    )
    return path


def _wait(predicate: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def test_an_extra_interface_reaches_the_guest(
    nethost: NetHost, vm_name: str, tmp_path: Path
) -> None:
    config = _manifest(tmp_path / "vm.yaml", vm_name, "ext0")
    started = time.monotonic()
    nethost.cli("run", "--ssh", "--wait=false", "--network-plugin", "cni", f"--config={config}")
    assert time.monotonic() - started < 60  # back while the supervisor waits for ext0
    uid = json.loads(nethost.cli("inspect", "vm", vm_name))["metadata"]["uid"]
    ns = f"ignite-{uid}"
    assert Path("/run/netns", ns).exists()
    tag, octet = secrets.token_hex(2), secrets.randbelow(200) + 20
    host_end, vm_end = f"vh{tag}", f"vx{tag}"
    nethost.run("ip", "link", "add", host_end, "type", "veth", "peer", "name", vm_end)
    nethost.run("ip", "addr", "add", f"10.202.{octet}.1/24", "dev", host_end)
    nethost.run("ip", "link", "set", host_end, "up")
    nethost.run("ip", "link", "set", vm_end, "netns", ns)
    sh("ip", "-n", ns, "addr", "add", f"10.202.{octet}.2/24", "dev", vm_end)
    mac = json.loads(sh("ip", "-j", "-n", ns, "link", "show", vm_end))[0]["address"]
    # the name appears with the address already on it: nothing races
    sh("ip", "-n", ns, "link", "set", vm_end, "name", "ext0")

    assert nethost.cli("exec", vm_name, "cat", "/sys/class/net/eth1/address").strip() == mac
    addrs = nethost.cli("exec", vm_name, "ip", "-o", "-4", "addr", "show", "eth1")
    assert f"10.202.{octet}.2/24" in addrs
    # the address moved: it is the guest's now, not the namespace's
    assert "inet " not in sh("ip", "-n", ns, "-o", "-4", "addr", "show", "ext0")
    assert "tap1" in sh("ip", "-n", ns, "-o", "link")
    ping = nethost.run("busybox", "ping", "-c", "1", "-W", "5", f"10.202.{octet}.2", check=False)
    assert ping.returncode == 0, ping.stdout.decode() + ping.stderr.decode()
    back = nethost.cli("exec", vm_name, "ping", "-c", "1", "-W", "5", f"10.202.{octet}.1")
    assert "1 packets received" in back
    # eth0 still works as before (CNI, the bridge's gateway)
    assert "1 packets received" in nethost.cli("exec", vm_name, "ping", "-c", "1", "-W", "5",
                                               nethost.subnet + "1")  # fmt: skip

    nethost.cli("rm", "-f", vm_name)
    assert not Path("/run/netns", ns).exists()
    links = nethost.run("ip", "-o", "link").stdout.decode()
    assert host_end not in links  # the pair went with the VM's namespace


def test_join_and_unjoin_give_the_interface_back(env: Env) -> None:
    """The plugin with the interface in place before the start (the user made the namespace
    and the veth first): joined to tap1, its address moved to the guest's NIC; tc.unjoin
    gives the address back and removes the tap and the qdisc; detach removes the namespace."""
    from dataclasses import replace

    from ignitevm.network import tc
    from ignitevm.network.cnirecord import NetworkRecord

    plugin = env.plugin()
    req = replace(env.request(), interfaces=("foo",))
    ns = req.prefixed_id
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "add", "foo", "type", "veth", "peer", "name", "foo-peer")
        sh("ip", "-n", ns, "addr", "add", "10.203.0.2/24", "dev", "foo")
        att = env.in_host(lambda: plugin.attach(req))
        try:
            (nic,) = att.extra_nics
            assert (nic.guest_name, nic.tap, nic.cidrs) == ("eth1", "tap1", ("10.203.0.2/24",))
            assert "inet " not in sh("ip", "-n", ns, "-o", "-4", "addr", "show", "foo")
            assert "ingress" in sh("tc", "-n", ns, "qdisc", "show", "dev", "foo")
            record = NetworkRecord.load(req.vm_dir)
            assert record is not None and record.extra[0]["name"] == "foo"
            tc.unjoin(ns, [("foo", "tap1", ("10.203.0.2/24",))])
            assert "10.203.0.2/24" in sh("ip", "-n", ns, "-o", "-4", "addr", "show", "foo")
            assert "tap1" not in sh("ip", "-n", ns, "-o", "link")
            assert "ingress" not in sh("tc", "-n", ns, "qdisc", "show", "dev", "foo")
        finally:
            env.in_host(lambda: plugin.detach(req))
        assert not Path("/run/netns", ns).exists()
    finally:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)
