"""Opening a VM's tap as a file descriptor, for a VMM that may not open it itself (the jailed
QEMU has no /dev/net/tun and no CAP_NET_ADMIN; docs/runtime.md "The jail")."""

from __future__ import annotations

import fcntl
import os
import struct

from ignitevm.network.netns import run_in_netns

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000


def open_tap(netns: str | None, name: str) -> int:
    """An fd attached to the tap ``name`` in namespace ``netns`` (None: this one); the caller
    closes it once the VMM holds its copy."""

    def attach() -> int:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        try:
            flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR  # QEMU uses the virtio-net header
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), flags))
        except BaseException:
            os.close(fd)
            raise
        return fd

    return attach() if netns is None else run_in_netns(netns, attach)
