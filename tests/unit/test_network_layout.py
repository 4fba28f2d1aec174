"""The layout of ignitevm/network (docs/network.md): the contract at the bottom, no import circle
(counting imports inside functions too), every module importable on its own, and the registry
loading a plugin's module only when that plugin is asked for."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import ignitevm.network
from ignitevm.errors import ValidationError
from ignitevm.network.base import PluginName
from ignitevm.network.registry import PLUGINS, require_plugin

PACKAGE = "ignitevm.network"
NETWORK_DIR = Path(ignitevm.network.__file__).parent
MODULES = sorted(f"{PACKAGE}.{p.stem}" for p in NETWORK_DIR.glob("*.py") if p.stem != "__init__")


def imported_network_modules(path: Path) -> set[str]:
    """The ignitevm.network modules ``path`` imports, at any depth of its code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(PACKAGE + "."))
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == PACKAGE:  # from ignitevm.network import cniconf, tc
                found.update(f"{PACKAGE}.{a.name}" for a in node.names)
            elif node.module.startswith(PACKAGE + "."):
                found.add(node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    return {
        f"{PACKAGE}.{p.stem}": imported_network_modules(p)
        for p in NETWORK_DIR.glob("*.py")
        if p.stem != "__init__"
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path (first module repeated at the end), or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for dep in sorted(graph.get(node, ())):
            if (cycle := visit(dep, [*path, node])) is not None:
                return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        if (cycle := visit(start, [])) is not None:
            return cycle
    return None


def test_no_import_circle_in_network() -> None:
    graph = import_graph()
    assert set(graph) == set(MODULES)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_contract_is_at_the_bottom() -> None:
    assert import_graph()[f"{PACKAGE}.base"] == set()


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_registry_names_every_plugin() -> None:
    assert set(PLUGINS) == set(PluginName)
    for name, target in PLUGINS.items():
        plugin = require_plugin(str(name))
        assert plugin.name == name
        assert f"{type(plugin).__module__}:{type(plugin).__name__}" == target


def test_registry_rejects_an_unknown_name() -> None:
    with pytest.raises(ValidationError, match="unknown network plugin 'bridge'") as info:
        require_plugin("bridge")
    assert info.value.hint == "use one of: cni, user, none"


def test_registry_loads_a_plugin_module_only_when_asked() -> None:
    script = (
        "import sys\n"
        "from ignitevm.network.registry import require_plugin\n"
        "require_plugin('none'); require_plugin('user')\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('ignitevm.network.'))\n"
        "print(' '.join(loaded))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == [
        "ignitevm.network.base",
        "ignitevm.network.none",
        "ignitevm.network.registry",
        "ignitevm.network.user",
    ]
