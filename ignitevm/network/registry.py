"""The network plugins by name. A plugin's module is imported only when the plugin is asked
for, so ``none`` and ``user`` never load the cni plugin's modules (see docs/network.md)."""

from __future__ import annotations

import importlib

from ignitevm.errors import ValidationError
from ignitevm.network.base import NetworkPlugin, PluginName

# name -> "module:class"; the class is built without arguments
PLUGINS: dict[PluginName, str] = {
    PluginName.CNI: "ignitevm.network.cni:CNINetwork",
    PluginName.USER: "ignitevm.network.user:UserNetwork",
    PluginName.NONE: "ignitevm.network.none:NoNetwork",
}


def require_plugin(name: str) -> NetworkPlugin:
    """Return the plugin called ``name`` or raise ValidationError listing the choices."""
    try:
        target = PLUGINS[PluginName(name)]
    except ValueError:
        choices = ", ".join(p.value for p in PluginName)
        raise ValidationError(
            f"unknown network plugin {name!r}", hint=f"use one of: {choices}"
        ) from None
    module_name, _, class_name = target.partition(":")
    factory = getattr(importlib.import_module(module_name), class_name)
    plugin: NetworkPlugin = factory()
    return plugin
