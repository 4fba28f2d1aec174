"""Start-up cost control for the CLI: ``ignite ps`` must answer in well under 250 ms."""

import os
import sys
import types
from collections.abc import Iterable
from typing import Any


def _no_plugins() -> Iterable[Any]:
    return ()


def skip_pydantic_plugin_discovery() -> None:
    """Tell pydantic there are no plugins without asking importlib.metadata.

    Pydantic's plugin loader imports ``importlib.metadata`` (and with it the ``email`` package) when
    the first model is built, which costs 30-45 ms per process here; ignitevm uses no pydantic
    plugins. Setting ``PYDANTIC_DISABLE_PLUGINS`` to a list of plugin names (pydantic's own
    switch) keeps the normal discovery.
    """
    name = "pydantic.plugin._loader"
    if name in sys.modules:
        return
    if os.environ.get("PYDANTIC_DISABLE_PLUGINS", "__all__") not in ("__all__", "1", "true"):
        return
    stub = types.ModuleType(name, "ignitevm: pydantic plugin discovery skipped (no plugins)")
    stub.get_plugins = _no_plugins  # type: ignore[attr-defined]
    sys.modules[name] = stub
