"""The bridge plugin's per-container masquerade chain: its name, and its removal when the
plugin's own DEL could not find it (see docs/network.md, "Records and teardown")."""

from __future__ import annotations

import hashlib
import logging
import shlex

from ignitevm import proc
from ignitevm.network.cniconf import NetworkConfigList

log = logging.getLogger(__name__)


def masquerade_chain(network: str, cid: str) -> str:
    """The bridge plugin's per-container nat chain (its utils.FormatChainName)."""
    return "CNI-" + hashlib.sha512((network + cid).encode()).hexdigest()[:24]


def remove_leaked_masquerade(net: NetworkConfigList, cid: str) -> None:
    """If the bridge plugin could not find the address (netns gone), drop its chain."""
    if not any(p.get("type") == "bridge" and p.get("ipMasq") for p in net.plugins):
        return
    iptables = proc.find_tool("iptables")
    if iptables is None:
        return
    chain = masquerade_chain(net.name, cid)
    listing = proc.run([iptables, "-w", "-t", "nat", "-S"], check=False)
    rules = listing.stdout.decode(errors="replace").splitlines()
    leaked = [r for r in rules if r.startswith("-A POSTROUTING") and f"-j {chain}" in r]
    if not leaked and f"-N {chain}" not in rules:
        return
    log.warning("removing leaked masquerade chain %s of %s", chain, cid)
    for rule in leaked:
        argv = [iptables, "-w", "-t", "nat", "-D", *_split_rule(rule)[1:]]
        proc.run(argv, check=False)
    proc.run([iptables, "-w", "-t", "nat", "-F", chain], check=False)
    proc.run([iptables, "-w", "-t", "nat", "-X", chain], check=False)


def _split_rule(rule: str) -> list[str]:
    return shlex.split(rule)
