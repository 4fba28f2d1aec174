"""Network plugin ``user``: QEMU user-mode networking (slirp); ports become host forwards."""

from __future__ import annotations

from ignitevm.network.base import Attachment, NetworkRequest, PluginName


class UserNetwork:
    """Plugin ``user``. Needs no root for networking: QEMU does it all in its own process. The
    guest address is slirp's fixed 10.0.2.15/24; the host ports are checked free before the
    start (ops/preflight.py)."""

    name = PluginName.USER

    def attach(self, req: NetworkRequest) -> Attachment:
        return Attachment(
            user_net=True,
            ports=req.ports,
            ip="10.0.2.15",
            prefix_len=24,
            gateway="10.0.2.2",
            dns=("10.0.2.3",),
        )

    def detach(self, req: NetworkRequest) -> None:
        return None
