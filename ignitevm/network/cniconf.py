"""CNI network configuration lists and plugin binaries: where they are, what Ignite writes."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ignitevm import proc
from ignitevm.errors import IgniteError, MissingToolError
from ignitevm.fsutil import write_json_atomic

log = logging.getLogger(__name__)

DEFAULT_CONF_DIR = Path("/etc/cni/net.d")
# Debian's containernetworking-plugins installs to /usr/lib/cni; upstream (and Ignite) used /opt.
DEFAULT_BIN_DIRS = (Path("/usr/lib/cni"), Path("/opt/cni/bin"))
CONF_DIR_ENV = "IGNITE_CNI_CONF_DIR"
BIN_DIR_ENV = "IGNITE_CNI_BIN_DIR"
DEFAULT_CONF_NAME = "10-ignite.conflist"
CONF_SUFFIXES = (".conflist", ".conf", ".json")
INSTALL_HINT = "install the CNI plugins: apt-get install containernetworking-plugins"


def default_conflist() -> dict[str, Any]:
    """Ignite's network: bridge ignite0 on 10.61.0.0/16 with masquerading, then portmap."""
    return {
        "cniVersion": "1.0.0",
        "name": "ignite-cni-bridge",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "ignite0",
                "isGateway": True,
                "ipMasq": True,
                # host-local reads runtimeConfig.ips: a restarted VM asks for its old address
                "capabilities": {"ips": True},
                "ipam": {
                    "type": "host-local",
                    "subnet": "10.61.0.0/16",
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {
                "type": "portmap",
                "capabilities": {"portMappings": True},
                # snat: a published port also answers on 127.0.0.1
                "snat": True,
            },
        ],
    }


class CNIConfigError(IgniteError):
    """A CNI configuration file is missing, unreadable or not a network configuration."""


@dataclass(frozen=True)
class NetworkConfigList:
    """One CNI network: its name, version and plugin configurations, in order."""

    name: str
    cni_version: str
    plugins: tuple[Mapping[str, Any], ...]
    source: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "cniVersion": self.cni_version, "plugins": list(self.plugins)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: Path | None = None) -> NetworkConfigList:
        """Accept a config list, or a single-plugin ``.conf`` (which becomes a list of one)."""
        where = str(source) if source else "CNI configuration"
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise CNIConfigError(f"{where}: no network name", hint='add a "name" field')
        version = str(data.get("cniVersion") or "0.2.0")
        if "plugins" in data:
            plugins = data["plugins"]
            if not isinstance(plugins, list) or not plugins:
                raise CNIConfigError(f"{where}: empty plugin list", hint="add a plugin")
        elif "type" in data:
            plugins = [{k: v for k, v in data.items() if k not in ("name", "cniVersion")}]
        else:
            raise CNIConfigError(f"{where}: neither plugins nor type", hint="fix the file")
        for plugin in plugins:
            if not isinstance(plugin, dict) or not isinstance(plugin.get("type"), str):
                raise CNIConfigError(f"{where}: a plugin has no type", hint="fix the file")
        return cls(name=name, cni_version=version, plugins=tuple(plugins), source=source)


def resolve_conf_dir(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return explicit
    env = os.environ.get(CONF_DIR_ENV)
    return Path(env) if env else DEFAULT_CONF_DIR


def resolve_bin_dirs(explicit: Sequence[Path] | None = None) -> tuple[Path, ...]:
    if explicit is not None:
        return tuple(explicit)
    env = os.environ.get(BIN_DIR_ENV)
    if env:
        return tuple(Path(p) for p in env.split(os.pathsep) if p)
    return DEFAULT_BIN_DIRS


def find_config_list(conf_dir: Path) -> NetworkConfigList | None:
    """The first usable configuration in lexical order (as libcni picks), or None."""
    if not conf_dir.is_dir():
        return None
    for path in sorted(conf_dir.iterdir()):
        if path.suffix not in CONF_SUFFIXES or not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CNIConfigError(
                f"cannot read CNI configuration {path}: {exc}", hint="fix or remove the file"
            ) from exc
        if not isinstance(data, dict):
            raise CNIConfigError(f"{path} is not a JSON object", hint="fix or remove the file")
        return NetworkConfigList.from_json(data, source=path)
    return None


def write_default_config(conf_dir: Path) -> Path:
    """Write Ignite's default config list atomically (several VMs may start at once)."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    target = conf_dir / DEFAULT_CONF_NAME
    write_json_atomic(target, default_conflist())
    log.info("wrote the default CNI network configuration %s", target)
    return target


def require_config_list(conf_dir: Path) -> NetworkConfigList:
    """The network to use: the first config in ``conf_dir``, or Ignite's default written there."""
    found = find_config_list(conf_dir)
    if found is not None:
        return found
    write_default_config(conf_dir)
    found = find_config_list(conf_dir)
    if found is None:  # pragma: no cover - we just wrote it
        raise CNIConfigError(f"no CNI configuration in {conf_dir}", hint="check the directory")
    return found


def find_plugin(plugin_type: str, bin_dirs: Sequence[Path]) -> Path | None:
    for directory in bin_dirs:
        candidate = directory / plugin_type
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_plugin_binary(plugin_type: str, bin_dirs: Sequence[Path]) -> Path:
    found = find_plugin(plugin_type, bin_dirs)
    if found is None:
        where = ", ".join(str(d) for d in bin_dirs)
        raise MissingToolError(
            f"CNI plugin {plugin_type!r} not found in {where}",
            hint=f"{INSTALL_HINT} (or set {BIN_DIR_ENV})",
        )
    return found


def plugin_types(net: NetworkConfigList) -> list[str]:
    """Every binary the list needs: the plugins and their IPAM plugins."""
    types: list[str] = []
    for plugin in net.plugins:
        types.append(str(plugin["type"]))
        ipam = plugin.get("ipam")
        if isinstance(ipam, dict) and isinstance(ipam.get("type"), str):
            types.append(ipam["type"])
    return types


def missing_requirements(conf_dir: Path, bin_dirs: Sequence[Path]) -> tuple[str, ...]:
    """What the cni plugin would miss on this host, by name: the CNI config's plugin binaries
    (Ignite's default's when there is no config yet; nothing is written), ``ip`` and ``tc``
    (namespaces, the tap and its redirect) and ``iptables`` when bridge or portmap is used.
    Empty when all is there. ops/preflight.py reports it (see docs/firecracker.md)."""
    net = find_config_list(conf_dir) or NetworkConfigList.from_json(default_conflist())
    types = plugin_types(net)
    missing = [t for t in dict.fromkeys(types) if find_plugin(t, bin_dirs) is None]
    tools = ["ip", "tc"]
    if any(t in ("bridge", "portmap") for t in types):
        tools.append("iptables")  # the plugins run it (their PATH gets /usr/sbin:/sbin too)
    missing += [tool for tool in tools if proc.find_tool(tool) is None]
    return tuple(missing)
