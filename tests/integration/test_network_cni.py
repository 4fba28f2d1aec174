"""The cni plugin against Debian's real CNI plugins, iproute2, tc and iptables.

Isolation: every test gets its own "host" network namespace (the plugins' host side -- bridge,
veths, iptables chains, ip_forward -- lives there, never in the real host's namespace), its own CNI
config dir, bridge name, network name, a subnet in 10.199.0.0/16 and a host-local data dir under
tmp_path. The plugin runs in a thread that entered that namespace (subprocesses inherit it).
A "fake guest" opens the VM's tap0 through /dev/net/tun and speaks raw Ethernet: DHCP, ARP, ICMP.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from ignitevm.network import cniconf, dhcp
from ignitevm.network.base import NetworkRequest, PortMapping
from ignitevm.network.cni import CNINetwork
from ignitevm.network.cniconf import NetworkConfigList
from ignitevm.network.cniexec import CNIRuntime, RuntimeArgs
from ignitevm.network.cnirecord import NetworkRecord
from ignitevm.network.masquerade import masquerade_chain
from ignitevm.network.netns import run_in_netns
from ignitevm.network.ports import require_free_ports

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not Path("/usr/lib/cni/bridge").exists(), reason="no CNI plugins"),
]

T = TypeVar("T")
TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000


def sh(*argv: str, check: bool = True) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{argv} failed: {done.stderr}")
    return done.stdout


@dataclass
class Env:
    tag: str
    host_ns: str
    bridge: str
    network: str
    subnet_prefix: str  # "10.199.N."
    conf_dir: Path
    data_dir: Path
    tmp: Path
    uids: list[str] = field(default_factory=list)
    netns_names: list[str] = field(default_factory=list)  # of requests with their own id prefix

    def plugin(self) -> CNINetwork:
        return CNINetwork(conf_dir=self.conf_dir, bin_dirs=[Path("/usr/lib/cni")])

    def request(
        self, ports: tuple[PortMapping, ...] = (), id_prefix: str = "ignite"
    ) -> NetworkRequest:
        uid = secrets.token_hex(8)
        self.uids.append(uid)
        self.netns_names.append(f"{id_prefix}-{uid}")
        vm_dir = self.tmp / "vm" / uid
        vm_dir.mkdir(parents=True)
        mac = "02:1e:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(4))
        return NetworkRequest(uid, f"vm-{uid[:6]}", vm_dir, mac, ports, id_prefix=id_prefix)

    def in_host(self, fn: Callable[[], T]) -> T:
        return run_in_netns(self.host_ns, fn)

    def host(self, *argv: str, check: bool = True) -> str:
        return sh("ip", "netns", "exec", self.host_ns, *argv, check=check)

    def leases(self) -> list[str]:
        d = self.data_dir / self.network
        if not d.exists():
            return []
        return sorted(p.name for p in d.iterdir() if p.name.startswith(self.subnet_prefix))

    def bridge_ports(self) -> list[str]:
        out = self.host("ip", "-o", "link", "show", "master", self.bridge, check=False)
        return [line.split(":")[1].strip() for line in out.splitlines() if line.strip()]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    tag = secrets.token_hex(3)
    octet = secrets.randbelow(250) + 2
    e = Env(
        tag=tag,
        host_ns=f"igt-host-{tag}",
        bridge=f"igt{tag}",
        network=f"igt-net-{tag}",
        subnet_prefix=f"10.199.{octet}.",
        conf_dir=tmp_path / "net.d",
        data_dir=tmp_path / "ipam",
        tmp=tmp_path,
    )
    e.conf_dir.mkdir()
    conflist = {
        "cniVersion": "1.0.0",
        "name": e.network,
        "plugins": [
            {
                "type": "bridge",
                "bridge": e.bridge,
                "isGateway": True,
                "ipMasq": True,
                "capabilities": {"ips": True},
                "ipam": {
                    "type": "host-local",
                    "subnet": f"10.199.{octet}.0/24",
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(e.data_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        ],
    }
    (e.conf_dir / "10-test.conflist").write_text(json.dumps(conflist))
    sh("ip", "netns", "add", e.host_ns)
    try:
        e.host("ip", "link", "set", "lo", "up")
        yield e
    finally:
        for name in {*(f"ignite-{uid}" for uid in e.uids), *e.netns_names}:
            sh("ip", "netns", "delete", name, check=False)
        # the host namespace holds the bridge, veths and every iptables chain of the test
        sh("ip", "netns", "delete", e.host_ns, check=False)


# --- the fake guest ---------------------------------------------------------------------------


class FakeGuest:
    """Opens the VM's tap like QEMU does and speaks raw Ethernet from the guest's MAC."""

    def __init__(self, netns: str, mac: str) -> None:
        self.mac = dhcp.mac_to_bytes(mac)
        self.fd = run_in_netns(netns, self._open_tap)
        # The tap's carrier comes up at once, but its qdisc is only activated by the kernel's
        # linkwatch work (up to ~1 s later); until then frames *to* the guest are dropped.
        deadline = time.monotonic() + 5
        while "state UP" not in sh("ip", "-n", netns, "-o", "link", "show", "tap0"):
            assert time.monotonic() < deadline, "tap0 never came up"
            time.sleep(0.02)

    @staticmethod
    def _open_tap() -> int:
        fd = os.open("/dev/net/tun", os.O_RDWR)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", b"tap0", IFF_TAP | IFF_NO_PI))
        return fd

    def close(self) -> None:
        os.close(self.fd)

    def frames(self, timeout: float) -> Iterator[bytes]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                yield os.read(self.fd, 65535)

    def dhcp(
        self,
        mtype: dhcp.MessageType,
        extra: dict[int, bytes] | None = None,
        flags: int = 0,
        timeout: float = 5.0,
        renew: tuple[str, str, bytes] | None = None,  # (ciaddr, server ip, server MAC)
    ) -> dhcp.DHCPMessage | None:
        xid = secrets.randbits(32)
        ciaddr = renew[0] if renew else "0.0.0.0"
        msg = dhcp.DHCPMessage(op=1, xid=xid, chaddr=self.mac, flags=flags, ciaddr=ciaddr)
        opts = [(int(dhcp.Option.MESSAGE_TYPE), bytes((mtype,))), *(extra or {}).items()]
        payload = dhcp.encode_dhcp(msg, opts)
        dst_ip, dst_mac = (renew[1], renew[2]) if renew else ("255.255.255.255", b"\xff" * 6)
        frame = dhcp.build_udp_frame(self.mac, dst_mac, ciaddr, dst_ip, 68, 67, payload)
        os.write(self.fd, frame)
        for reply in self.frames(timeout):
            udp = dhcp.parse_udp_frame(reply)
            if udp is None or udp[3] != 68:
                continue
            answer = dhcp.parse_dhcp(udp[4])
            if answer.xid == xid:
                return answer
        return None

    def ping_peer(self, my_ip: str, peer_ip: str, timeout: float = 5.0) -> bool:
        """ARP for ``peer_ip``, then an ICMP echo to it; True when the reply comes back."""
        me, peer = socket.inet_aton(my_ip), socket.inet_aton(peer_ip)
        arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, self.mac, me, bytes(6), peer)
        os.write(self.fd, b"\xff" * 6 + self.mac + b"\x08\x06" + arp)
        peer_mac = None
        for frame in self.frames(timeout):
            if frame[12:14] == b"\x08\x06" and frame[20:22] == b"\x00\x02" and frame[28:32] == peer:
                peer_mac = frame[22:28]
                break
        if peer_mac is None:
            return False
        icmp = bytearray(struct.pack("!BBHHH", 8, 0, 0, 0x1D, 1) + b"vm-to-vm")
        icmp[2:4] = struct.pack("!H", dhcp.ip_checksum(bytes(icmp)))
        iph = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0, 64, 1, 0,
                                    me, peer))  # fmt: skip
        iph[10:12] = struct.pack("!H", dhcp.ip_checksum(bytes(iph)))
        os.write(self.fd, peer_mac + self.mac + b"\x08\x00" + bytes(iph) + bytes(icmp))
        for frame in self.frames(timeout):
            is_icmp_from_peer = frame[12:14] == b"\x08\x00" and frame[23] == 1
            if is_icmp_from_peer and frame[26:30] == peer and frame[34] == 0:  # echo reply
                return True
        return False

    def answer_arp_and_ping(self, ip: str, stop: threading.Event) -> None:
        """Be ``ip`` on the wire: answer ARP requests and ICMP echo requests for it."""
        me = socket.inet_aton(ip)
        while not stop.is_set():
            for frame in self.frames(0.2):
                reply = _arp_reply(frame, self.mac, me) or _echo_reply(frame, self.mac, me)
                if reply:
                    os.write(self.fd, reply)


def _arp_reply(frame: bytes, mac: bytes, ip: bytes) -> bytes | None:
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    op = struct.unpack("!H", frame[20:22])[0]
    sha, spa, tpa = frame[22:28], frame[28:32], frame[38:42]
    if op != 1 or tpa != ip:
        return None
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, mac, ip, sha, spa)
    return sha + mac + b"\x08\x06" + body


def _echo_reply(frame: bytes, mac: bytes, ip: bytes) -> bytes | None:
    if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 1 or frame[30:34] != ip:
        return None
    ihl = (frame[14] & 0x0F) * 4
    icmp = bytearray(frame[14 + ihl :])
    if icmp[0] != 8:
        return None
    icmp[0], icmp[2:4] = 0, b"\0\0"
    icmp[2:4] = struct.pack("!H", dhcp.ip_checksum(bytes(icmp)))
    iph = bytearray(frame[14 : 14 + ihl])
    iph[12:16], iph[16:20], iph[10:12] = frame[30:34], frame[26:30], b"\0\0"
    iph[10:12] = struct.pack("!H", dhcp.ip_checksum(bytes(iph)))
    return frame[6:12] + mac + b"\x08\x00" + bytes(iph) + bytes(icmp)


def ping(env: Env, ip: str, timeout: float = 3.0) -> bool:
    sock = env.in_host(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
    with sock:
        ident = secrets.randbits(16)
        packet = bytearray(struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"ignitevm-ping")
        packet[2:4] = struct.pack("!H", dhcp.ip_checksum(bytes(packet)))
        deadline = time.monotonic() + timeout
        sock.sendto(bytes(packet), (ip, 0))
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, (src, _) = sock.recvfrom(2048)
            except TimeoutError:
                return False
            ihl = (data[0] & 0x0F) * 4
            if (
                src == ip
                and data[ihl] == 0
                and struct.unpack("!H", data[ihl + 4 : ihl + 6])[0] == ident
            ):
                return True
    return False


# --- assertions about leftovers ---------------------------------------------------------------


def assert_nothing_left(env: Env, reqs: list[NetworkRequest]) -> None:
    nat = env.host("iptables-save", "-t", "nat")
    for req in reqs:
        assert not Path("/var/run/netns", req.prefixed_id).exists()
        cid = req.prefixed_id
        assert cid not in nat, f"iptables rules of {cid} left:\n{nat}"
        assert masquerade_chain(env.network, cid) not in nat
        record = NetworkRecord.load(req.vm_dir)
        assert record is not None and not record.attached
    assert "CNI-DN-" not in nat
    assert env.bridge_ports() == []
    assert env.leases() == []
    macs = {f"dhcp-{req.mac}" for req in reqs}
    assert not [t.name for t in threading.enumerate() if t.name in macs]


# --- tests ------------------------------------------------------------------------------------


def test_id_prefix_names_the_netns_and_container_and_teardown_uses_the_record(env: Env) -> None:
    """Issue 14 item 4: a VM attached with id prefix t14-lab gets netns and CNI container id
    t14-lab-<uid>; a teardown asked with another prefix (the CLI's changed) still removes it."""
    plugin = env.plugin()
    req = env.request(id_prefix="t14-lab")
    att = env.in_host(lambda: plugin.attach(req))
    try:
        assert att.netns == f"t14-lab-{req.vm_uid}"
        assert Path("/var/run/netns", att.netns).exists()
        assert not Path("/var/run/netns", f"ignite-{req.vm_uid}").exists()
        assert att.ip is not None and env.leases() == [att.ip]
        lease = (env.data_dir / env.network / att.ip).read_text()
        assert lease.splitlines()[0] == f"t14-lab-{req.vm_uid}"  # host-local's container id
        assert f"t14-lab-{req.vm_uid}" in env.host("iptables-save", "-t", "nat")
    finally:
        other = NetworkRequest(req.vm_uid, req.vm_name, req.vm_dir, req.mac)  # prefix "ignite"
        env.in_host(lambda: plugin.detach(other))
    assert_nothing_left(env, [req])


def test_attach_dhcp_ping_detach(env: Env) -> None:
    plugin = env.plugin()
    req = env.request(ports=(PortMapping(18000 + secrets.randbelow(2000), 22),))
    # what ops/preflight.py checks before a start (the plugin itself checks nothing)
    assert cniconf.missing_requirements(env.conf_dir, [Path("/usr/lib/cni")]) == ()
    env.in_host(lambda: require_free_ports(req.ports))
    att = env.in_host(lambda: plugin.attach(req))
    try:
        assert att.netns == req.prefixed_id and att.tap == "tap0"
        assert att.ip is not None and att.ip.startswith(env.subnet_prefix)
        assert att.gateway == env.subnet_prefix + "1" and att.prefix_len == 24
        links = sh("ip", "-n", att.netns, "-o", "link")
        assert "tap0" in links and "eth0" in links
        assert "inet " not in sh("ip", "-n", att.netns, "-o", "-4", "addr", "show", "eth0")
        assert env.leases() == [att.ip]
        assert len(env.bridge_ports()) == 1
        assert f"--dport {req.ports[0].host_port}" in env.host("iptables-save", "-t", "nat")

        guest = FakeGuest(att.netns, req.mac)
        try:
            offer = guest.dhcp(dhcp.MessageType.DISCOVER)
            assert offer is not None, "no DHCP OFFER"
            assert offer.message_type == dhcp.MessageType.OFFER and offer.yiaddr == att.ip
            assert offer.option_ip(dhcp.Option.ROUTER) == att.gateway
            assert offer.option_ip(dhcp.Option.SUBNET_MASK) == "255.255.255.0"
            assert offer.options[dhcp.Option.HOSTNAME] == req.vm_name.encode()
            ack = guest.dhcp(
                dhcp.MessageType.REQUEST,
                {
                    int(dhcp.Option.REQUESTED_IP): socket.inet_aton(att.ip),
                    int(dhcp.Option.SERVER_ID): socket.inet_aton(str(att.gateway)),
                },
            )
            assert ack is not None and ack.message_type == dhcp.MessageType.ACK
            # a renewal is unicast to the server id (the gateway) and its MAC (the bridge's)
            bridge_mac = dhcp.mac_to_bytes(
                env.host("cat", f"/sys/class/net/{env.bridge}/address").strip()
            )
            renewed = guest.dhcp(
                dhcp.MessageType.REQUEST, renew=(att.ip, str(att.gateway), bridge_mac)
            )
            assert renewed is not None and renewed.message_type == dhcp.MessageType.ACK
            # a DHCP frame must not leave the namespace: the bridge never sees the client MAC
            fdb = env.host("bridge", "fdb", "show", "br", env.bridge)
            assert req.mac not in fdb

            stop = threading.Event()
            responder = threading.Thread(target=guest.answer_arp_and_ping, args=(att.ip, stop))
            responder.start()
            try:
                assert ping(env, att.ip), "host -> guest ping through tc redirect failed"
            finally:
                stop.set()
                responder.join()
        finally:
            guest.close()
    finally:
        env.in_host(lambda: plugin.detach(req))
    assert_nothing_left(env, [req])
    env.in_host(lambda: plugin.detach(req))  # idempotent


def test_dhcp_ignores_other_macs(env: Env) -> None:
    plugin = env.plugin()
    req = env.request()
    att = env.in_host(lambda: plugin.attach(req))
    try:
        guest = FakeGuest(str(att.netns), "02:00:00:00:00:99")
        try:
            assert guest.dhcp(dhcp.MessageType.DISCOVER, timeout=1.0) is None
        finally:
            guest.close()
    finally:
        env.in_host(lambda: plugin.detach(req))
    assert_nothing_left(env, [req])


def test_address_kept_across_restarts(env: Env) -> None:
    plugin = env.plugin()
    req = env.request()
    first = env.in_host(lambda: plugin.attach(req))
    env.in_host(lambda: plugin.detach(req))
    other = env.request()
    taken = env.in_host(lambda: plugin.attach(other))  # host-local would hand out the next one
    try:
        again = env.in_host(lambda: plugin.attach(req))
        assert again.ip == first.ip and again.ip != taken.ip
        env.in_host(lambda: plugin.detach(req))
    finally:
        env.in_host(lambda: plugin.detach(other))
    assert_nothing_left(env, [req, other])


def test_taken_previous_address_falls_back_to_a_new_one(env: Env) -> None:
    plugin = env.plugin()
    a, b = env.request(), env.request()
    first = env.in_host(lambda: plugin.attach(a))
    env.in_host(lambda: plugin.detach(a))
    # b asks for a's old address (as if it had held it before) and gets it ...
    NetworkRecord(attached=False, last_ip=first.ip, last_network=env.network).save(b.vm_dir)
    got_b = env.in_host(lambda: plugin.attach(b))
    try:
        assert got_b.ip == first.ip
        # ... so a's request fails in host-local; a gets another address, no duplicate
        got_a = env.in_host(lambda: plugin.attach(a))
        try:
            assert got_a.ip != got_b.ip
            assert env.leases() == sorted([str(got_a.ip), str(got_b.ip)])
        finally:
            env.in_host(lambda: plugin.detach(a))
    finally:
        env.in_host(lambda: plugin.detach(b))
    assert_nothing_left(env, [a, b])


def test_two_vms_reach_each_other(env: Env) -> None:
    plugin = env.plugin()
    a, b = env.request(), env.request()
    att_a = env.in_host(lambda: plugin.attach(a))
    try:
        att_b = env.in_host(lambda: plugin.attach(b))
        try:
            guest_a, guest_b = (
                FakeGuest(str(att_a.netns), a.mac),
                FakeGuest(str(att_b.netns), b.mac),
            )
            stop = threading.Event()
            responder = threading.Thread(target=guest_b.answer_arp_and_ping,
                                         args=(str(att_b.ip), stop))  # fmt: skip
            responder.start()
            try:
                assert guest_a.ping_peer(str(att_a.ip), str(att_b.ip)), "A cannot reach B"
            finally:
                stop.set()
                responder.join()
                guest_a.close()
                guest_b.close()
        finally:
            env.in_host(lambda: plugin.detach(b))
    finally:
        env.in_host(lambda: plugin.detach(a))
    assert_nothing_left(env, [a, b])


CRASHER = """
import os, sys, time
from pathlib import Path
from ignitevm.network.base import NetworkRequest
from ignitevm.network.cni import CNINetwork
from ignitevm.network.netns import run_in_netns
req = NetworkRequest(sys.argv[1], "crash", Path(sys.argv[2]), sys.argv[3])
plugin = CNINetwork(conf_dir=Path(sys.argv[4]), bin_dirs=[Path("/usr/lib/cni")])
# not "ip netns exec": its private mount namespace would hide the VM's netns mount
att = run_in_netns(sys.argv[5], lambda: plugin.attach(req))
print(att.ip, flush=True)
time.sleep(600)
"""


def attach_in_child(env: Env, req: NetworkRequest) -> str:
    """Attach from a child process (a supervisor), kill -9 it, and return the address it got:
    its DHCP responder thread dies with it, and nothing was detached."""
    argv = [sys.executable, "-c", CRASHER, req.vm_uid, str(req.vm_dir), req.mac]
    child = subprocess.Popen(
        [*argv, str(env.conf_dir), env.host_ns], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        ip = child.stdout.readline().strip()
        assert ip.startswith(env.subnet_prefix)
    finally:
        child.kill()
        child.wait()
    return ip


def test_detach_after_kill_9(env: Env) -> None:
    req = env.request()
    ip = attach_in_child(env, req)
    record = NetworkRecord.load(req.vm_dir)
    assert record is not None and record.attached
    assert env.leases() == [ip]
    # a fresh process (here: a fresh plugin object) cleans up from network.json alone
    env.in_host(lambda: env.plugin().detach(req))
    assert_nothing_left(env, [req])
    # and the VM gets its address back on the next start
    again = env.plugin()
    att = env.in_host(lambda: again.attach(req))
    try:
        assert att.ip == ip
    finally:
        env.in_host(lambda: again.detach(req))
    assert_nothing_left(env, [req])


def test_stale_attachment_is_cleaned_by_next_attach(env: Env) -> None:
    req = env.request()
    first_ip = attach_in_child(env, req)
    # the supervisor vanished without detach; the next start must not allocate twice (#660)
    fresh = env.plugin()
    again = env.in_host(lambda: fresh.attach(req))
    try:
        assert again.ip == first_ip
        assert env.leases() == [first_ip]
        assert len(env.bridge_ports()) == 1
    finally:
        env.in_host(lambda: fresh.detach(req))
    assert_nothing_left(env, [req])


def test_five_parallel_attach_detach(env: Env) -> None:
    plugin = env.plugin()
    reqs = [env.request() for _ in range(5)]
    with ThreadPoolExecutor(5) as pool:
        atts = list(pool.map(lambda r: env.in_host(lambda: plugin.attach(r)), reqs))
    try:
        ips = [a.ip for a in atts]
        assert len(set(ips)) == 5, ips
        assert env.leases() == sorted(str(ip) for ip in ips)
        assert len(env.bridge_ports()) == 5
    finally:
        with ThreadPoolExecutor(5) as pool:
            list(pool.map(lambda r: env.in_host(lambda: plugin.detach(r)), reqs))
    assert_nothing_left(env, reqs)


def test_detach_removes_masquerade_chain_when_netns_vanished(env: Env) -> None:
    req = env.request()
    attach_in_child(env, req)  # its responder, which held the namespace, died with it
    record = NetworkRecord.load(req.vm_dir)
    assert record is not None and record.attached
    sh("ip", "netns", "delete", req.prefixed_id)  # e.g. deleted by hand
    env.in_host(lambda: env.plugin().detach(req))
    assert_nothing_left(env, [req])


def test_portmap_end_to_end_with_runtime(env: Env) -> None:
    """portmap + host-local through the CNI runtime alone: a real TCP server on eth0 in the
    namespace (before any tc redirect), reached via the published port on 127.0.0.1."""
    from ignitevm.network import netns

    net_conf = NetworkConfigList.from_json(
        json.loads((env.conf_dir / "10-test.conflist").read_text())
    )
    uid = secrets.token_hex(8)
    env.uids.append(uid)
    ns = f"ignite-{uid}"
    host_port = 20000 + secrets.randbelow(5000)
    args = RuntimeArgs(
        container_id=f"ignite-{uid}",
        netns=f"/var/run/netns/{ns}",
        ports=(PortMapping(host_port, 8080),),
    )
    runtime = CNIRuntime([Path("/usr/lib/cni")])
    netns.add_netns(ns)
    try:
        result = env.in_host(lambda: runtime.add(net_conf, args))
        server = run_in_netns(ns, lambda: socket.create_server(("0.0.0.0", 8080)))
        with server:
            served = threading.Thread(target=lambda: server.accept()[0].sendall(b"hello vm"))
            served.start()
            conn = env.in_host(lambda: socket.create_connection(("127.0.0.1", host_port), 5))
            with conn:
                assert conn.recv(100) == b"hello vm"
            served.join(5)
        errors = env.in_host(lambda: runtime.delete(net_conf, args, result))
        assert errors == []
    finally:
        netns.delete_netns(ns)
    nat = env.host("iptables-save", "-t", "nat")
    assert f"ignite-{uid}" not in nat and str(host_port) not in nat
    assert env.leases() == []
