"""The network plugin contract the supervisor drives: the request, the attachment and the
plugin protocol (see docs/network.md). It imports no other network module; the plugins
(none.py, user.py, cni.py) sit above it and registry.py names them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

# Ignite's default idPrefix: a VM's host objects are named "<prefix>-<uid>"
DEFAULT_ID_PREFIX = "ignite"


class PluginName(StrEnum):
    CNI = "cni"
    USER = "user"
    NONE = "none"


class Protocol_(StrEnum):
    TCP = "tcp"
    UDP = "udp"


@dataclass(frozen=True)
class PortMapping:
    """``[host_ip:]host_port:vm_port[/protocol]`` as Ignite's ``--ports`` takes it."""

    host_port: int
    vm_port: int
    protocol: Protocol_ = Protocol_.TCP
    host_ip: str = "0.0.0.0"

    def __str__(self) -> str:
        return f"{self.host_ip}:{self.host_port}->{self.vm_port}/{self.protocol}"

    def to_dict(self) -> dict[str, object]:
        """The JSON form kept in launch.json, runtime.json and network.json."""
        return {
            "host_port": self.host_port,
            "vm_port": self.vm_port,
            "protocol": str(self.protocol),
            "host_ip": self.host_ip,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PortMapping:
        return cls(
            int(data["host_port"]),
            int(data["vm_port"]),
            Protocol_(data.get("protocol", "tcp")),
            str(data.get("host_ip", "0.0.0.0")),
        )


@dataclass(frozen=True)
class NetworkRequest:
    """What the supervisor asks of a plugin for one VM start."""

    vm_uid: str
    vm_name: str
    vm_dir: Path  # the plugin may keep its records here (e.g. network.json) for a later detach
    mac: str
    ports: tuple[PortMapping, ...] = ()
    # the VM's recorded VM.status.idPrefix, not the CLI's: names made at start are found again
    # at teardown whatever the configuration says by then
    id_prefix: str = DEFAULT_ID_PREFIX
    # extra interfaces (annotations ignite.weave.works/interface/NAME) the user puts into the
    # VM's namespace; the guest gets them as eth1, eth2... in this order (docs/network.md)
    interfaces: tuple[str, ...] = ()
    # called while attach waits for something only the user can do (create those interfaces):
    # the supervisor tells its launcher, which may return; False means give up (a stop came)
    on_wait: Callable[[str, float], bool] | None = field(default=None, compare=False, repr=False)

    @property
    def prefixed_id(self) -> str:
        """``<prefix>-<uid>``: the VM's network namespace and CNI container id (Ignite's
        ``vm.PrefixedID()``)."""
        return f"{self.id_prefix or DEFAULT_ID_PREFIX}-{self.vm_uid}"


@dataclass(frozen=True)
class GuestNIC:
    """An extra NIC: the tap the VMM opens, the guest's name for it, the MAC it must have (the
    interface's own: tc redirect passes frames unchanged) and the addresses moved to it."""

    guest_name: str  # eth1, eth2, ...
    tap: str
    mac: str
    cidrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Attachment:
    """What a plugin set up: the VMM is started inside ``netns`` (None: the host's) and given
    ``tap`` (None: no tap). ``user_net`` asks the VMM for user-mode networking with ``ports`` as
    host forwards. ``ip``/``prefix_len``/``gateway``/``dns`` go to the guest (``ip=`` and DHCP)."""

    netns: str | None = None
    tap: str | None = None
    user_net: bool = False
    ports: tuple[PortMapping, ...] = ()
    ip: str | None = None
    prefix_len: int | None = None
    gateway: str | None = None
    dns: tuple[str, ...] = field(default_factory=tuple)
    extra_nics: tuple[GuestNIC, ...] = ()  # in the netns too, after eth0's tap


class NetworkPlugin(Protocol):
    """A network plugin. It checks nothing about the host: ops/preflight.py does that once,
    before the supervisor starts (see docs/network.md)."""

    name: PluginName

    def attach(self, req: NetworkRequest) -> Attachment:
        """Set the network up before the VMM starts. May start helpers (a DHCP responder) that
        live until ``detach``. On failure, undo what was done and raise IgniteError."""
        ...

    def detach(self, req: NetworkRequest) -> None:
        """Undo ``attach``. Idempotent, and must work from a fresh process after the attaching
        supervisor died (kill -9): everything needed is read from records under ``req.vm_dir``."""
