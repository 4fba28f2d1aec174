"""``<vm_dir>/network.json``: what the cni plugin set up for a VM, recorded before it is
created, so a fresh process can tear it down after the supervisor died (kill -9); and the VM's
last address, kept after detach too, so a restart asks host-local for it again (see
docs/network.md)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ignitevm.layout import VMFiles
from ignitevm.network import tc
from ignitevm.network.base import NetworkRequest
from ignitevm.records import RecordError, read_record, write_record

log = logging.getLogger(__name__)

RECORD_NAME = VMFiles.NETWORK
IFNAME = "eth0"
RECORD_VERSION = 1


def netns_name(req: NetworkRequest) -> str:
    """The VM's namespace: ``<idPrefix>-<uid>``, as Ignite named its sandbox container."""
    return req.prefixed_id


def container_id(req: NetworkRequest) -> str:
    return req.prefixed_id


def leftover_prefix(vm_uid: str) -> str | None:
    """The id prefix of a namespace ``<prefix>-<uid>`` a run of the VM left, if one is there:
    what names its network objects when no record says (a damaged runtime.json)."""
    from ignitevm.network.netns import NETNS_DIR

    suffix = f"-{vm_uid}"
    try:
        names = sorted(p.name for p in NETNS_DIR.iterdir() if p.name.endswith(suffix))
    except FileNotFoundError:
        return None
    return names[0][: -len(suffix)] if names else None


@dataclass(frozen=True)
class NetworkRecord:
    """``network.json``: what was set up for the VM (``attached``), or only its last address."""

    attached: bool
    netns: str = ""
    container_id: str = ""
    ifname: str = IFNAME
    tap: str = tc.TAP_NAME
    network: dict[str, Any] = field(default_factory=dict)  # the config list used for ADD
    ports: list[dict[str, Any]] = field(default_factory=list)
    requested_ips: list[str] = field(default_factory=list)
    result: dict[str, Any] | None = None  # the cached final ADD result (prevResult for DEL)
    cidrs: list[str] = field(default_factory=list)  # addresses moved from ifname to the guest
    # extra interfaces joined to taps (multinet.nic_to_dict), recorded before the taps exist
    extra: list[dict[str, Any]] = field(default_factory=list)
    last_ip: str | None = None
    last_network: str | None = None
    version: int = RECORD_VERSION

    @classmethod
    def load(cls, vm_dir: Path) -> NetworkRecord | None:
        """The record, or None when there is none or it is damaged (a warning says so: the
        teardown then works from the netns and the CNI cache alone)."""
        path = vm_dir / RECORD_NAME
        try:
            return read_record(cls, path)
        except FileNotFoundError:
            return None
        except (OSError, RecordError) as exc:
            log.warning("ignoring unreadable %s: %s", path, exc)
            return None

    def save(self, vm_dir: Path) -> None:
        vm_dir.mkdir(parents=True, exist_ok=True)
        write_record(vm_dir / RECORD_NAME, self, fsync=True)
