"""The DHCP responder's codec and decisions, without sockets."""

from __future__ import annotations

import socket
import struct

import pytest

from ignitevm.network import dhcp
from ignitevm.network.dhcp import DHCPMessage, Lease, MessageType, Option

MAC = "02:1e:aa:bb:cc:dd"
LEASE = Lease(
    mac=MAC,
    ip="10.61.0.7",
    prefix_len=16,
    gateway="10.61.0.1",
    dns=("192.0.2.53", "192.0.2.54"),
    hostname="quiet-fox",
    lease_seconds=3600,
)


def request(mtype: MessageType, mac: str = MAC, flags: int = 0, **opts: bytes) -> DHCPMessage:
    options = {int(Option.MESSAGE_TYPE): bytes((mtype,))}
    for name, value in opts.items():
        options[int(Option[name.upper()])] = value
    return DHCPMessage(op=1, xid=0x1234ABCD, chaddr=dhcp.mac_to_bytes(mac), flags=flags,
                       options=options)  # fmt: skip


def client_frame(msg: DHCPMessage) -> bytes:
    payload = dhcp.encode_dhcp(msg, list(msg.options.items()))
    return dhcp.build_udp_frame(
        msg.chaddr, b"\xff" * 6, "0.0.0.0", "255.255.255.255", 68, 67, payload
    )


def test_encode_parse_roundtrip() -> None:
    msg = request(MessageType.DISCOVER, requested_ip=socket.inet_aton("10.61.0.7"))
    wire = dhcp.encode_dhcp(msg, list(msg.options.items()))
    assert len(wire) >= 300
    back = dhcp.parse_dhcp(wire)
    assert back.xid == msg.xid and back.chaddr == msg.chaddr
    assert back.message_type == MessageType.DISCOVER
    assert back.option_ip(Option.REQUESTED_IP) == "10.61.0.7"


def test_long_options_are_split_and_joined() -> None:
    value = bytes(range(256)) * 2  # 512 bytes: three option chunks on the wire (RFC 3396)
    encoded = dhcp.encode_options([(Option.HOSTNAME, value)])
    assert encoded.count(bytes((Option.HOSTNAME,))) >= 3
    assert dhcp.parse_options(encoded)[Option.HOSTNAME] == value


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x01" * 100, b"\x01\x01\x06" + b"\0" * 233 + b"nope"],
)
def test_parse_rejects_garbage(payload: bytes) -> None:
    with pytest.raises(ValueError):
        dhcp.parse_dhcp(payload)


def test_truncated_option_is_an_error() -> None:
    with pytest.raises(ValueError):
        dhcp.parse_options(bytes((Option.HOSTNAME, 10)) + b"abc")


def test_offer_carries_the_lease() -> None:
    reply = dhcp.build_reply(request(MessageType.DISCOVER), LEASE)
    assert reply is not None
    assert reply.message_type == MessageType.OFFER
    assert reply.yiaddr == "10.61.0.7" and reply.xid == 0x1234ABCD and reply.op == 2
    assert reply.option_ip(Option.SUBNET_MASK) == "255.255.0.0"
    assert reply.option_ip(Option.ROUTER) == "10.61.0.1"
    assert reply.option_ip(Option.SERVER_ID) == "10.61.0.1"
    assert reply.option_ip(Option.BROADCAST) == "10.61.255.255"
    assert reply.options[Option.DNS] == socket.inet_aton("192.0.2.53") + socket.inet_aton(
        "192.0.2.54"
    )
    assert reply.options[Option.HOSTNAME] == b"quiet-fox"
    assert struct.unpack("!I", reply.options[Option.LEASE_TIME]) == (3600,)
    assert struct.unpack("!I", reply.options[Option.RENEWAL_T1]) == (1800,)


def test_other_macs_get_nothing() -> None:
    assert dhcp.build_reply(request(MessageType.DISCOVER, mac="02:00:00:00:00:01"), LEASE) is None


def test_request_for_our_address_is_acked() -> None:
    req = request(
        MessageType.REQUEST,
        requested_ip=socket.inet_aton("10.61.0.7"),
        server_id=socket.inet_aton("10.61.0.1"),
    )
    reply = dhcp.build_reply(req, LEASE)
    assert reply is not None and reply.message_type == MessageType.ACK


def test_renewal_by_ciaddr_is_acked() -> None:
    msg = request(MessageType.REQUEST)
    renewing = DHCPMessage(msg.op, msg.xid, msg.chaddr, ciaddr="10.61.0.7", options=msg.options)
    reply = dhcp.build_reply(renewing, LEASE)
    assert reply is not None and reply.message_type == MessageType.ACK


def test_request_for_another_address_is_naked() -> None:
    req = request(MessageType.REQUEST, requested_ip=socket.inet_aton("10.61.0.99"))
    reply = dhcp.build_reply(req, LEASE)
    assert reply is not None and reply.message_type == MessageType.NAK
    assert reply.yiaddr == "0.0.0.0" and Option.LEASE_TIME not in reply.options


def test_request_to_another_server_is_ignored() -> None:
    req = request(
        MessageType.REQUEST,
        requested_ip=socket.inet_aton("10.61.0.7"),
        server_id=socket.inet_aton("10.61.0.200"),
    )
    assert dhcp.build_reply(req, LEASE) is None


@pytest.mark.parametrize("mtype", [MessageType.RELEASE, MessageType.DECLINE])
def test_release_and_decline_are_ignored(mtype: MessageType) -> None:
    assert dhcp.build_reply(request(mtype), LEASE) is None


def test_handle_frame_unicasts_to_the_client_mac() -> None:
    server_mac = bytes.fromhex("020000000001")
    answer = dhcp.handle_frame(client_frame(request(MessageType.DISCOVER)), LEASE, server_mac)
    assert answer is not None
    assert answer[:6] == dhcp.mac_to_bytes(MAC) and answer[6:12] == server_mac
    parsed = dhcp.parse_udp_frame(answer)
    assert parsed is not None
    _src_mac, src_ip, sport, dport, payload = parsed
    assert (src_ip, sport, dport) == ("10.61.0.1", 67, 68)
    assert answer[30:34] == socket.inet_aton("10.61.0.7")  # IPv4 destination
    assert dhcp.ip_checksum(answer[14:34]) == 0
    assert dhcp.parse_dhcp(payload).message_type == MessageType.OFFER


def test_handle_frame_broadcasts_when_asked() -> None:
    frame = client_frame(request(MessageType.DISCOVER, flags=dhcp.BROADCAST_FLAG))
    answer = dhcp.handle_frame(frame, LEASE, b"\x02" * 6)
    assert answer is not None
    assert answer[:6] == b"\xff" * 6 and answer[30:34] == b"\xff" * 4


def test_handle_frame_ignores_non_dhcp() -> None:
    frame = dhcp.build_udp_frame(b"\x02" * 6, b"\xff" * 6, "0.0.0.0", "255.255.255.255",
                                 68, 53, b"x" * 300)  # fmt: skip
    assert dhcp.handle_frame(frame, LEASE, b"\x02" * 6) is None
    assert dhcp.handle_frame(b"\x00" * 20, LEASE, b"\x02" * 6) is None


def test_netmask_and_broadcast() -> None:
    lease = Lease(mac=MAC, ip="10.199.3.9", prefix_len=24, gateway=None)
    assert lease.netmask == "255.255.255.0"
    assert lease.broadcast == "10.199.3.255"
    assert lease.server_id == "10.199.3.9"  # no gateway: the lease's own address


def test_mac_parsing() -> None:
    assert dhcp.mac_to_str(dhcp.mac_to_bytes("02-1E-AA-BB-CC-DD")) == MAC
    with pytest.raises(ValueError):
        dhcp.mac_to_bytes("02:1e")
