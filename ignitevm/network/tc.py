"""Ignite's ``tc-redirect`` wiring inside a VM's namespace: tap <-> CNI interface.

Measured on the development kernel: cls_u32 and act_mirred exist, act_gact does not (``action
pass`` fails with "Failed to load TC action module"). A u32 filter with a ``flowid`` and no action
returns TC_ACT_OK, i.e. "deliver to this device's stack", which is what the DHCP exception needs.
"""

from __future__ import annotations

import logging

from ignitevm import proc
from ignitevm.errors import MissingToolError

log = logging.getLogger(__name__)

TAP_NAME = "tap0"


def require_tc() -> str:
    path = proc.find_tool("tc")
    if path is None:
        raise MissingToolError("tc is not installed", hint="install it: apt-get install iproute2")
    return path


def _batch(tool: str, netns: str, lines: list[str], check: bool = True) -> None:
    script = "".join(line + "\n" for line in lines)
    force = [] if check else ["-force"]  # -force: keep going after a failed line
    proc.run([tool, "-n", netns, *force, "-batch", "-"], input=script, check=check)


def redirect_commands(ifname: str, tap: str) -> list[str]:
    """``tc -batch`` lines: everything from ``ifname`` goes to ``tap`` and back, except frames
    from the tap to UDP port 67 (DHCP), which stay in the namespace for the responder."""
    match_all = "u32 match u32 0 0"
    return [
        f"qdisc add dev {ifname} ingress",
        f"qdisc add dev {tap} ingress",
        f"filter add dev {ifname} parent ffff: prio 1 protocol all {match_all}"
        f" action mirred egress redirect dev {tap}",
        # flowid without an action = TC_ACT_OK: up this device's stack (no act_gact needed)
        f"filter add dev {tap} parent ffff: prio 1 protocol ip u32"
        " match ip protocol 17 0xff match ip dport 67 0xffff flowid ffff:1",
        f"filter add dev {tap} parent ffff: prio 2 protocol all {match_all}"
        f" action mirred egress redirect dev {ifname}",
    ]


def install_redirect(netns: str, ifname: str, tap: str, cidrs: list[str]) -> None:
    """Create ``tap`` in ``netns``, take the CNI addresses off ``ifname`` (the guest owns them
    now) and join the two with tc redirects."""
    ip = proc.require_tool("ip")
    lines = [f"tuntap add dev {tap} mode tap", f"link set dev {tap} up"]
    lines += [f"addr del {cidr} dev {ifname}" for cidr in cidrs]
    _batch(ip, netns, lines)
    _batch(require_tc(), netns, redirect_commands(ifname, tap))


def restore_addresses(netns: str, ifname: str, tap: str, cidrs: list[str]) -> None:
    """Undo ``install_redirect`` enough for CNI DEL: the bridge plugin finds its masquerade
    chain through the container interface's address, so put the addresses back on it. (The
    tc filters go with the interfaces.) One ``ip -batch``: detach is on every VM stop."""
    lines = [f"addr add {cidr} dev {ifname}" for cidr in cidrs] + [f"link del dev {tap}"]
    ip = proc.require_tool("ip")
    done = proc.run([ip, "-n", netns, "-force", "-batch", "-"], input="\n".join(lines) + "\n",
                    check=False)  # fmt: skip
    for line in done.stderr.decode(errors="replace").splitlines():
        harmless = ("File exists", "Cannot find device", "Command failed")
        if line.strip() and not any(h in line for h in harmless):
            log.warning("restoring %s in %s: %s", ifname, netns, line.strip())


def join_commands(ifname: str, tap: str) -> list[str]:
    """``tc -batch`` lines joining an extra interface and its tap both ways (Ignite's
    tc-redirect mode for annotated interfaces: no DHCP exception, the guest's address is
    static)."""
    match_all = "u32 match u32 0 0"
    return [
        f"qdisc add dev {ifname} ingress",
        f"qdisc add dev {tap} ingress",
        f"filter add dev {ifname} parent ffff: prio 1 protocol all {match_all}"
        f" action mirred egress redirect dev {tap}",
        f"filter add dev {tap} parent ffff: prio 1 protocol all {match_all}"
        f" action mirred egress redirect dev {ifname}",
    ]


def join(netns: str, pairs: list[tuple[str, str, tuple[str, ...]]]) -> None:
    """For each (interface, tap, cidrs) in ``netns``: create the tap, move the interface's
    addresses off it (the guest owns them now), bring both up, redirect between them. One
    ``ip -batch`` and one ``tc -batch`` for all."""
    if not pairs:
        return
    lines: list[str] = []
    tc_lines: list[str] = []
    for ifname, tap, cidrs in pairs:
        lines += [f"tuntap add dev {tap} mode tap", f"link set dev {tap} up"]
        lines += [f"addr del {cidr} dev {ifname}" for cidr in cidrs]
        lines.append(f"link set dev {ifname} up")
        tc_lines += join_commands(ifname, tap)
    _batch(proc.require_tool("ip"), netns, lines)
    _batch(require_tc(), netns, tc_lines)


def unjoin(netns: str, pairs: list[tuple[str, str, tuple[str, ...]]]) -> None:
    """Undo ``join`` as far as the interfaces still exist: taps removed, the interfaces' ingress
    qdiscs (with the filters) removed, their addresses given back. Never fails."""
    if not pairs:
        return
    lines: list[str] = []
    tc_lines: list[str] = []
    for ifname, tap, cidrs in pairs:
        lines.append(f"link del dev {tap}")
        lines += [f"addr add {cidr} dev {ifname}" for cidr in cidrs]
        tc_lines.append(f"qdisc del dev {ifname} ingress")
    _batch(proc.require_tool("ip"), netns, lines, check=False)
    _batch(require_tc(), netns, tc_lines, check=False)
