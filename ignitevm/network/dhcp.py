"""DHCP for one VM, as a protocol: the BOOTP/DHCP message codec, the lease and the replies it
allows (only the VM's MAC, always the same (CNI) address), and the Ethernet/IPv4/UDP frames they
travel in. ``handle_frame`` turns a frame from the VM into the frame to send back; responder.py
serves it on the VM's tap (see docs/network.md).
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum

log = logging.getLogger(__name__)

ETH_P_IP = 0x0800
BOOTP_SERVER_PORT = 67
BOOTP_CLIENT_PORT = 68
MAGIC_COOKIE = b"\x63\x82\x53\x63"
BROADCAST_FLAG = 0x8000
_BOOTP_FIXED = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")  # 236 bytes before the cookie
_ETH = struct.Struct("!6s6sH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")


class MessageType(IntEnum):
    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


class Option(IntEnum):
    PAD = 0
    SUBNET_MASK = 1
    ROUTER = 3
    DNS = 6
    HOSTNAME = 12
    BROADCAST = 28
    REQUESTED_IP = 50
    LEASE_TIME = 51
    MESSAGE_TYPE = 53
    SERVER_ID = 54
    RENEWAL_T1 = 58
    REBINDING_T2 = 59
    END = 255


@dataclass(frozen=True)
class DHCPMessage:
    """The BOOTP fields a responder needs; ``options`` maps option code -> raw bytes."""

    op: int
    xid: int
    chaddr: bytes  # 6-byte hardware address
    flags: int = 0
    secs: int = 0
    ciaddr: str = "0.0.0.0"
    yiaddr: str = "0.0.0.0"
    siaddr: str = "0.0.0.0"
    giaddr: str = "0.0.0.0"
    options: dict[int, bytes] = field(default_factory=dict)

    @property
    def message_type(self) -> MessageType | None:
        raw = self.options.get(Option.MESSAGE_TYPE)
        if not raw:
            return None
        try:
            return MessageType(raw[0])
        except ValueError:
            return None

    def option_ip(self, code: int) -> str | None:
        raw = self.options.get(code)
        return socket.inet_ntoa(raw[:4]) if raw and len(raw) >= 4 else None


@dataclass(frozen=True)
class Lease:
    """What the VM gets: always the same address, for as long as it runs."""

    mac: str
    ip: str
    prefix_len: int
    gateway: str | None
    dns: tuple[str, ...] = ()
    hostname: str | None = None
    lease_seconds: int = 86400

    @property
    def netmask(self) -> str:
        bits = (0xFFFFFFFF << (32 - self.prefix_len)) & 0xFFFFFFFF if self.prefix_len else 0
        return socket.inet_ntoa(struct.pack("!I", bits))

    @property
    def broadcast(self) -> str:
        (addr,) = struct.unpack("!I", socket.inet_aton(self.ip))
        host_bits = (1 << (32 - self.prefix_len)) - 1
        return socket.inet_ntoa(struct.pack("!I", addr | host_bits))

    @property
    def server_id(self) -> str:
        # The gateway's address: a renewing client unicasts to it, and the tap's tc filter
        # hands every frame to UDP port 67 to this responder before it could leave the netns.
        return self.gateway or self.ip


def mac_to_bytes(mac: str) -> bytes:
    raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return raw


def mac_to_str(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw[:6])


# --- BOOTP/DHCP codec -------------------------------------------------------------------------


def parse_options(data: bytes) -> dict[int, bytes]:
    options: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        code = data[i]
        if code == Option.END:
            break
        if code == Option.PAD:
            i += 1
            continue
        if i + 1 >= len(data):
            raise ValueError("truncated DHCP option")
        length = data[i + 1]
        value = data[i + 2 : i + 2 + length]
        if len(value) != length:
            raise ValueError("truncated DHCP option")
        # RFC 3396: a repeated option is one long option
        options[code] = options.get(code, b"") + value
        i += 2 + length
    return options


def encode_options(options: Sequence[tuple[int, bytes]]) -> bytes:
    out = bytearray()
    for code, value in options:
        for start in range(0, max(len(value), 1), 255):
            chunk = value[start : start + 255]
            out += bytes((code, len(chunk))) + chunk
    out.append(Option.END)
    return bytes(out)


def parse_dhcp(payload: bytes) -> DHCPMessage:
    """Decode a BOOTP/DHCP message; raise ValueError for anything that is not one."""
    if len(payload) < _BOOTP_FIXED.size + 4:
        raise ValueError("short BOOTP message")
    (op, htype, hlen, _hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, _s, _f) = (
        _BOOTP_FIXED.unpack_from(payload)
    )
    if htype != 1 or hlen != 6:
        raise ValueError("not an Ethernet BOOTP message")
    if payload[_BOOTP_FIXED.size : _BOOTP_FIXED.size + 4] != MAGIC_COOKIE:
        raise ValueError("no DHCP magic cookie")
    return DHCPMessage(
        op=op,
        xid=xid,
        chaddr=chaddr[:6],
        flags=flags,
        secs=secs,
        ciaddr=socket.inet_ntoa(ciaddr),
        yiaddr=socket.inet_ntoa(yiaddr),
        siaddr=socket.inet_ntoa(siaddr),
        giaddr=socket.inet_ntoa(giaddr),
        options=parse_options(payload[_BOOTP_FIXED.size + 4 :]),
    )


def encode_dhcp(msg: DHCPMessage, option_list: Sequence[tuple[int, bytes]]) -> bytes:
    fixed = _BOOTP_FIXED.pack(
        msg.op,
        1,
        6,
        0,
        msg.xid,
        msg.secs,
        msg.flags,
        socket.inet_aton(msg.ciaddr),
        socket.inet_aton(msg.yiaddr),
        socket.inet_aton(msg.siaddr),
        socket.inet_aton(msg.giaddr),
        msg.chaddr.ljust(16, b"\0"),
        b"",
        b"",
    )
    body = fixed + MAGIC_COOKIE + encode_options(option_list)
    return body.ljust(300, b"\0")  # BOOTP's minimum; some clients drop shorter replies


def _lease_options(lease: Lease, mtype: MessageType, with_time: bool) -> list[tuple[int, bytes]]:
    opts: list[tuple[int, bytes]] = [
        (Option.MESSAGE_TYPE, bytes((mtype,))),
        (Option.SERVER_ID, socket.inet_aton(lease.server_id)),
    ]
    if mtype == MessageType.NAK:
        return opts
    if with_time:
        opts += [
            (Option.LEASE_TIME, struct.pack("!I", lease.lease_seconds)),
            (Option.RENEWAL_T1, struct.pack("!I", lease.lease_seconds // 2)),
            (Option.REBINDING_T2, struct.pack("!I", lease.lease_seconds * 7 // 8)),
        ]
    opts += [
        (Option.SUBNET_MASK, socket.inet_aton(lease.netmask)),
        (Option.BROADCAST, socket.inet_aton(lease.broadcast)),
    ]
    if lease.gateway:
        opts.append((Option.ROUTER, socket.inet_aton(lease.gateway)))
    if lease.dns:
        opts.append((Option.DNS, b"".join(socket.inet_aton(d) for d in lease.dns)))
    if lease.hostname:
        opts.append((Option.HOSTNAME, lease.hostname.encode()[:63]))
    return opts


def build_reply(request: DHCPMessage, lease: Lease) -> DHCPMessage | None:
    """The reply to ``request`` (OFFER, ACK or NAK) with its options, or None to stay silent."""
    if request.op != 1 or request.chaddr != mac_to_bytes(lease.mac):
        return None
    mtype = request.message_type
    answer: MessageType
    if mtype == MessageType.DISCOVER:
        answer = MessageType.OFFER
    elif mtype == MessageType.REQUEST:
        server = request.option_ip(Option.SERVER_ID)
        if server is not None and server != lease.server_id:
            return None  # the client chose another server's offer
        wanted = request.option_ip(Option.REQUESTED_IP) or request.ciaddr
        answer = MessageType.ACK if wanted == lease.ip else MessageType.NAK
    elif mtype == MessageType.INFORM:
        answer = MessageType.ACK
    else:
        return None  # RELEASE/DECLINE: nothing to do, the address stays the VM's
    inform = mtype == MessageType.INFORM
    yiaddr = "0.0.0.0" if answer == MessageType.NAK or inform else lease.ip
    options = _lease_options(lease, answer, with_time=not inform)
    return DHCPMessage(
        op=2,
        xid=request.xid,
        chaddr=request.chaddr,
        flags=request.flags,
        ciaddr=request.ciaddr if inform else "0.0.0.0",
        yiaddr=yiaddr,
        siaddr=lease.server_id,
        giaddr=request.giaddr,
        options={code: value for code, value in options},
    )


# --- Ethernet/IPv4/UDP framing ----------------------------------------------------------------


def ip_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def build_udp_frame(
    src_mac: bytes, dst_mac: bytes, src_ip: str, dst_ip: str, sport: int, dport: int, data: bytes
) -> bytes:
    """An Ethernet frame carrying one IPv4/UDP datagram (UDP checksum 0: optional in IPv4)."""
    udp = _UDP.pack(sport, dport, _UDP.size + len(data), 0) + data
    header = _IPV4.pack(
        0x45, 0x10, _IPV4.size + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0,
        socket.inet_aton(src_ip), socket.inet_aton(dst_ip),
    )  # fmt: skip
    header = header[:10] + struct.pack("!H", ip_checksum(header)) + header[12:]
    return _ETH.pack(dst_mac, src_mac, ETH_P_IP) + header + udp


def parse_udp_frame(frame: bytes) -> tuple[bytes, str, int, int, bytes] | None:
    """(src_mac, src_ip, sport, dport, payload) of an IPv4/UDP frame, else None."""
    if len(frame) < _ETH.size + _IPV4.size + _UDP.size:
        return None
    _dst, src_mac, ethertype = _ETH.unpack_from(frame)
    if ethertype != ETH_P_IP:
        return None
    ver_ihl, _tos, _total, _id, frag, _ttl, proto, _sum, src, _dst_ip = _IPV4.unpack_from(
        frame, _ETH.size
    )
    ihl = (ver_ihl & 0x0F) * 4
    if ver_ihl >> 4 != 4 or proto != socket.IPPROTO_UDP or frag & 0x1FFF or ihl < _IPV4.size:
        return None
    udp_at = _ETH.size + ihl
    if len(frame) < udp_at + _UDP.size:
        return None
    sport, dport, length, _csum = _UDP.unpack_from(frame, udp_at)
    payload = frame[udp_at + _UDP.size : udp_at + max(length, _UDP.size)]
    return src_mac, socket.inet_ntoa(src), sport, dport, payload


def reply_frame(request: DHCPMessage, reply: DHCPMessage, server_mac: bytes) -> bytes:
    """Address the reply as RFC 2131 4.1 says; we write straight to the client's link, so a
    unicast to an address it does not have yet needs no ARP."""
    option_list = list(reply.options.items())
    payload = encode_dhcp(reply, option_list)
    if request.ciaddr != "0.0.0.0" and reply.message_type != MessageType.NAK:
        dst_ip, dst_mac = request.ciaddr, request.chaddr
    elif request.flags & BROADCAST_FLAG or reply.message_type == MessageType.NAK:
        dst_ip, dst_mac = "255.255.255.255", b"\xff" * 6
    else:
        dst_ip, dst_mac = reply.yiaddr, request.chaddr
    return build_udp_frame(
        server_mac, dst_mac, reply.siaddr, dst_ip, BOOTP_SERVER_PORT, BOOTP_CLIENT_PORT, payload
    )


def handle_frame(frame: bytes, lease: Lease, server_mac: bytes) -> bytes | None:
    """The frame to send in answer to ``frame``, or None."""
    udp = parse_udp_frame(frame)
    if udp is None or udp[3] != BOOTP_SERVER_PORT:
        return None
    try:
        request = parse_dhcp(udp[4])
    except ValueError as exc:
        log.debug("ignoring a malformed DHCP frame: %s", exc)
        return None
    reply = build_reply(request, lease)
    if reply is None:
        return None
    log.info(
        "DHCP %s from %s -> %s %s",
        request.message_type.name if request.message_type else "?",
        mac_to_str(request.chaddr),
        reply.message_type.name if reply.message_type else "?",
        reply.yiaddr,
    )
    return reply_frame(request, reply, server_mac)
