"""The network plugins by name. A plugin's module is imported only when the plugin is asked
for, so ``none`` and ``user`` never load the cni plugin's modules (see docs/network.md).

``resolve_plugin_name`` is the one place a plugin name is decided: Ignite's ``docker-bridge``
(a Docker network; there is no Docker engine here) becomes the nearest plugin, ``cni`` (a bridge
with NAT as well), with a warning, so Ignite's configurations and command lines still start."""

from __future__ import annotations

import importlib
import logging

from ignitevm.errors import ValidationError
from ignitevm.network.base import NetworkPlugin, PluginName

log = logging.getLogger(__name__)

# name -> "module:class"; the class is built without arguments
PLUGINS: dict[PluginName, str] = {
    PluginName.CNI: "ignitevm.network.cni:CNINetwork",
    PluginName.USER: "ignitevm.network.user:UserNetwork",
    PluginName.NONE: "ignitevm.network.none:NoNetwork",
}

# Ignite's plugin names that have no plugin here -> the nearest one
NEAREST: dict[str, PluginName] = {"docker-bridge": PluginName.CNI}
_warned: set[str] = set()  # one warning per name and process (run resolves at create and start)


def resolve_plugin_name(name: str) -> PluginName:
    """The plugin ``name`` asks for; Ignite's ``docker-bridge`` maps to ``cni`` with a warning.
    Raises ValidationError for an unknown name, listing the choices."""
    nearest = NEAREST.get(name.strip().lower())
    if nearest is not None:
        if name not in _warned:
            _warned.add(name)
            log.warning(
                "network plugin %s is Ignite's Docker bridge; ignitevm runs no Docker engine: "
                "using %s, the nearest (a bridge with NAT, an address per VM)",
                name,
                nearest,
            )
        return nearest
    try:
        return PluginName(name)
    except ValueError:
        choices = ", ".join(p.value for p in PluginName)
        raise ValidationError(
            f"unknown network plugin {name!r}", hint=f"use one of: {choices}"
        ) from None


def require_plugin(name: str) -> NetworkPlugin:
    """Return the plugin called ``name`` (resolved as above) or raise ValidationError."""
    target = PLUGINS[resolve_plugin_name(name)]
    module_name, _, class_name = target.partition(":")
    factory = getattr(importlib.import_module(module_name), class_name)
    plugin: NetworkPlugin = factory()
    return plugin
