"""Host port checks shared by the plugins that publish ports."""

from __future__ import annotations

import socket
from collections.abc import Iterable

from ignitevm.errors import ConflictError
from ignitevm.network.base import PortMapping, Protocol_


def require_free_ports(ports: Iterable[PortMapping]) -> None:
    """Raise ConflictError naming the first host port that something already listens on."""
    for pm in ports:
        kind = socket.SOCK_STREAM if pm.protocol == Protocol_.TCP else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((pm.host_ip, pm.host_port))
            except OSError as exc:
                where = f"{pm.host_ip}:{pm.host_port}/{pm.protocol}"
                raise ConflictError(
                    f"host port {where} is not free: {exc.strerror}",
                    hint="choose another host port with -p, or stop what uses it",
                ) from None
