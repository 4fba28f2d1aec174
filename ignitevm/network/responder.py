"""The DHCP responder for one VM: a thread of the supervisor serving dhcp.py's replies on an
AF_PACKET socket bound to the VM's tap inside the VM's network namespace, so it needs no address
on the tap and never depends on the namespace's routes (see docs/network.md).
"""

from __future__ import annotations

import fcntl
import logging
import os
import select
import socket
import struct
import threading
import time

from ignitevm.network.dhcp import ETH_P_IP, Lease, handle_frame

log = logging.getLogger(__name__)


def open_tap_socket(ifname: str) -> socket.socket:
    """A packet socket for IPv4 frames arriving on ``ifname``. Call it inside the namespace: the
    socket stays bound to that namespace's device wherever it is used afterwards."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    try:
        sock.bind((ifname, ETH_P_IP))
    except OSError:
        sock.close()
        raise
    return sock


def interface_mac(sock: socket.socket, ifname: str) -> bytes:
    siocgifhwaddr = 0x8927
    raw = fcntl.ioctl(sock.fileno(), siocgifhwaddr, struct.pack("256s", ifname.encode()[:15]))
    return raw[18:24]


def serve(sock: socket.socket, lease: Lease, server_mac: bytes, wake_fd: int) -> None:
    """Answer DHCP on ``sock`` until ``wake_fd`` becomes readable."""
    watched: list[socket.socket | int] = [sock, wake_fd]
    while True:
        ready, _, _ = select.select(watched, [], [])
        if wake_fd in ready:
            return
        try:
            frame, addr = sock.recvfrom(65535)
            if len(addr) > 2 and addr[2] == socket.PACKET_OUTGOING:
                continue
            answer = handle_frame(frame, lease, server_mac)
            if answer is not None:
                sock.send(answer)
        except OSError as exc:
            # e.g. the tap lost its carrier (QEMU gone) between receive and send: the client
            # retries, and a lasting error must not spin the CPU
            log.warning("DHCP socket error: %s", exc)
            time.sleep(0.5)


class ResponderThread:
    """The responder as a thread of the calling process (the supervisor): no extra process
    (a separate responder costs ~15 MB RSS per VM), and it dies with the process by nature.
    Takes ownership of ``sock``."""

    def __init__(self, sock: socket.socket, lease: Lease, ifname: str) -> None:
        self.sock = sock
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        self.thread = threading.Thread(
            target=serve,
            args=(sock, lease, interface_mac(sock, ifname), self._wake_r),
            name=f"dhcp-{lease.mac}",
            daemon=True,
        )

    def start(self) -> ResponderThread:
        self.thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        os.write(self._wake_w, b"x")
        self.thread.join(timeout)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        self.sock.close()
