"""Host port checks shared by the plugins that publish ports."""

from __future__ import annotations

import socket
from collections.abc import Iterable

from ignitevm.errors import ConflictError, ValidationError
from ignitevm.network.base import PortMapping, Protocol_


def parse_port_mapping(text: str) -> PortMapping:
    """Parse ``[ip:]host:vm[/tcp|udp]`` (Ignite's ``--ports``)."""
    spec, _, proto = text.partition("/")
    parts = spec.split(":")
    try:
        protocol = Protocol_(proto or "tcp")
    except ValueError:
        raise ValidationError(
            f"port mapping {text!r}: unknown protocol {proto!r}", hint="use tcp or udp"
        ) from None
    host_ip = "0.0.0.0"
    if len(parts) == 3:
        host_ip, host, vm = parts
    elif len(parts) == 2:
        host, vm = parts
    else:
        raise ValidationError(
            f"port mapping {text!r} is not [ip:]host:vm[/tcp|udp]",
            hint="for example: -p 2222:22 or -p 127.0.0.1:8080:80/tcp",
        )
    try:
        host_port, vm_port = int(host), int(vm)
    except ValueError:
        raise ValidationError(
            f"port mapping {text!r}: ports must be numbers", hint="for example: -p 2222:22"
        ) from None
    for port in (host_port, vm_port):
        if not 0 < port < 65536:
            raise ValidationError(
                f"port mapping {text!r}: port {port} is out of range", hint="use 1-65535"
            )
    return PortMapping(host_port, vm_port, protocol, host_ip)


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
