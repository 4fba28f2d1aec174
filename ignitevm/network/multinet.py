"""Extra interfaces: Ignite's ``ignite.weave.works/interface/NAME: tc-redirect`` annotations
(see docs/network.md "Multiple networks").

The user puts interface NAME into the VM's namespace (``<prefix>-<uid>``) -- before the start,
or after ``ignite run --wait=false`` returned, as Ignite's multinet e2e test does. At start the
cni plugin waits for every annotated interface (up to INTERFACE_WAIT), then joins each to a
tap of its own with tc redirects (eth0's mechanism, network/tc.py); the VMM gets one more NIC
per interface, with the interface's MAC, and the guest's /init names them eth1, eth2... in the
order of the names (sorted, as Ignite does) and gives them the interface's IPv4 addresses,
which are moved off the interface while the VM runs and given back when it stops."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ignitevm import proc
from ignitevm.errors import IgniteError
from ignitevm.network.base import GuestNIC

log = logging.getLogger(__name__)

ANNOTATION_PREFIX = "ignite.weave.works/interface/"
MODE_TC = "tc-redirect"
# Ignite's other modes: macvtap would need the supervisor to hand QEMU an open /dev/tapN (fd
# passing, which the supervisor does not do), dhcp-bridge a bridge and a DHCP server per
# interface; tc-redirect gives the guest the same link (docs/network.md).
NEAREST_MODE = {"macvtap": MODE_TC, "dhcp-bridge": MODE_TC}
INTERFACE_WAIT = 120.0  # Ignite's ignite-spawn waited 2 minutes for the interfaces
POLL = 0.5
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")  # a Linux interface name (IFNAMSIZ - 1)
_RESERVED = frozenset({"lo", "eth0", "tap0", ".", ".."})


def annotated_interfaces(annotations: Mapping[str, str]) -> tuple[str, ...]:
    """The interface names the annotations ask for, sorted (the guest's eth1, eth2... order).
    Unknown modes and unusable names are warned about and left out, as Ignite does."""
    names: list[str] = []
    for key, mode in annotations.items():
        if not key.startswith(ANNOTATION_PREFIX):
            continue
        name = key.removeprefix(ANNOTATION_PREFIX)
        if mode in NEAREST_MODE:
            log.warning("interface %s: mode %s is done as %s here", name, mode, NEAREST_MODE[mode])
        elif mode != MODE_TC:
            log.warning("interface %s: unknown mode %r ignored (use %s)", name, mode, MODE_TC)
            continue
        if not _NAME.fullmatch(name) or name in _RESERVED or name.startswith("tap"):
            log.warning("interface %r: not a name that can be given to the VM; ignored", name)
            continue
        names.append(name)
    return tuple(sorted(names))


def guest_nic_names(count: int) -> list[tuple[str, str]]:
    """(guest name, tap) of the extra NICs: eth1/tap1, eth2/tap2, ..."""
    return [(f"eth{i}", f"tap{i}") for i in range(1, count + 1)]


@dataclass(frozen=True)
class Link:
    name: str
    mac: str
    cidrs: tuple[str, ...]  # IPv4 only, as Ignite moved them


def read_links(netns: str) -> dict[str, Link]:
    """Every interface of ``netns`` with its MAC and IPv4 addresses (``ip -j addr``)."""
    out = proc.output([proc.require_tool("ip"), "-j", "-n", netns, "addr", "show"])
    links: dict[str, Link] = {}
    for entry in json.loads(out or "[]"):
        cidrs = tuple(
            f"{a['local']}/{a['prefixlen']}"
            for a in entry.get("addr_info", [])
            if a.get("family") == "inet" and "local" in a
        )
        links[entry["ifname"]] = Link(entry["ifname"], entry.get("address", ""), cidrs)
    return links


def wait_for_interfaces(
    netns: str,
    names: tuple[str, ...],
    on_wait: Callable[[str, float], bool] | None,
    timeout: float = INTERFACE_WAIT,
    reader: Callable[[str], dict[str, Link]] = read_links,
) -> list[Link]:
    """The interfaces ``names`` once all are in ``netns``. ``on_wait`` hears of each poll that
    finds some missing (False: give up). Interfaces that appeared while waiting are taken once
    two polls agree on them, so the MAC and addresses a script sets right after creating one
    come along (Ignite's e2e: ``ip link add foo type veth; ip link set foo address ...``)."""
    deadline = time.monotonic() + timeout
    appeared_late = False
    while True:
        links = reader(netns)
        missing = [n for n in names if n not in links]
        if not missing:
            return (
                _settled(netns, names, links, reader, deadline)
                if appeared_late
                else [links[n] for n in names]
            )
        appeared_late = True
        what = f"interfaces {', '.join(missing)} in network namespace {netns}"
        if time.monotonic() >= deadline:
            raise IgniteError(
                f"waited {timeout:g} s for {what}",
                hint=f"create them there (e.g. ip link set IF netns {netns}) after "
                "ignite run --wait=false, or remove the ignite.weave.works/interface/ "
                "annotations",
            )
        if on_wait is not None and not on_wait(what, max(0.0, deadline - time.monotonic())):
            raise IgniteError(f"stopped while waiting for {what}")
        time.sleep(POLL)


def _settled(
    netns: str,
    names: tuple[str, ...],
    links: dict[str, Link],
    reader: Callable[[str], dict[str, Link]],
    deadline: float,
) -> list[Link]:
    """``names``' links once two polls POLL apart agree (or at the deadline)."""
    now = [links[n] for n in names]
    while time.monotonic() < deadline:
        time.sleep(POLL)
        again = reader(netns)
        if any(n not in again for n in names):
            continue  # one is being renamed or moved: keep the last complete view
        later = [again[n] for n in names]
        if later == now:
            break
        now = later
    return now


def guest_nics(links: list[Link]) -> tuple[GuestNIC, ...]:
    return tuple(
        GuestNIC(guest, tap, link.mac, link.cidrs)
        for link, (guest, tap) in zip(links, guest_nic_names(len(links)), strict=True)
    )


def nic_to_dict(name: str, nic: GuestNIC) -> dict[str, object]:
    """The record of one joined interface in network.json (what detach needs)."""
    return {"name": name, "guest": nic.guest_name, "tap": nic.tap, "mac": nic.mac,
            "cidrs": list(nic.cidrs)}  # fmt: skip


def pairs(records: list[dict[str, object]]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(interface, tap, cidrs) of recorded interfaces, for tc.join/unjoin; damaged ones are
    left out (a name from a record is only used as an argument of ip/tc in the VM's netns)."""
    out = []
    for rec in records:
        name, tap, cidrs = rec.get("name"), rec.get("tap"), rec.get("cidrs", [])
        if not isinstance(name, str) or not isinstance(tap, str) or not isinstance(cidrs, list):
            continue
        if _NAME.fullmatch(name) and _NAME.fullmatch(tap):
            out.append((name, tap, tuple(str(c) for c in cidrs)))
    return out
