"""Parsing Ignite's ``--ports`` syntax: ``[ip:]host:vm[/tcp|udp]``."""

from __future__ import annotations

from ignitevm.errors import ValidationError


def parse_port_mapping(text: str) -> tuple[str, int, int, str]:
    """(host ip, host port, VM port, protocol) or ValidationError naming ``text``."""
    spec, _, proto = text.partition("/")
    parts = spec.split(":")
    protocol = proto or "tcp"
    if protocol not in ("tcp", "udp"):
        raise ValidationError(
            f"port mapping {text!r}: unknown protocol {proto!r}", hint="use tcp or udp"
        )
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
    return host_ip or "0.0.0.0", host_port, vm_port, protocol
