"""The host's name servers a VM can use (see docs/network.md, "DNS")."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def host_nameservers(
    resolv_conf: Path = Path("/etc/resolv.conf"),
    fallback: Path = Path("/run/systemd/resolve/resolv.conf"),
) -> tuple[str, ...]:
    """The host's IPv4 name servers the guest can reach. A 127.x stub (systemd-resolved, dnsmasq)
    only listens on the host's loopback; then systemd-resolved's upstream list is used, and when
    there is none the guest gets no DNS server rather than an unreachable one."""
    for path in (resolv_conf, fallback):
        servers = _read_nameservers(path)
        usable = tuple(s for s in servers if not s.startswith("127.") and ":" not in s)
        if usable:
            return usable[:3]
        if servers:
            log.debug("%s has only loopback/IPv6 name servers: %s", path, ", ".join(servers))
    log.warning("no name server reachable from VMs in %s; guests get no DNS", resolv_conf)
    return ()


def _read_nameservers(path: Path) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    return [ln.split()[1] for ln in lines if ln.startswith("nameserver") and len(ln.split()) > 1]
