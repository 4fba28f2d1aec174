#!/usr/bin/env python3
"""Check the package's import graph: no cycle between modules (module-level imports) and no
import from a lower layer into a higher one (any import, lazy ones included), as
docs/architecture.md "Layers" orders them. Prints violations; exit 1 if any."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "ignitevm"
# lower number = lower layer; a module may import its own layer and lower ones only
LAYERS = {
    "errors": 0, "layout": 0, "proc": 0, "fsutil": 0, "hostinfo": 0, "userpaths": 0, "untar": 0,
    "records": 1,
    "api": 2, "store": 3, "network": 4, "vmm": 5, "spawn": 6,
    "oci": 4, "disk": 4, "kernel": 4,
    "ops": 7, "gitops": 8, "cli": 9, "testing": 10, "client": 8, "__init__": 10,
}  # fmt: skip


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else "__init__"
    return LAYERS.get(key, 99)


def imports(path: Path) -> set[str]:
    """The ignitevm modules ``path`` imports, at module level or in a function (a lazy import
    is still a dependency); ``if TYPE_CHECKING:`` blocks do not count."""
    tree = ast.parse(path.read_text())
    skip = {
        id(n)
        for b in ast.walk(tree)
        if isinstance(b, ast.If) and "TYPE_CHECKING" in ast.unparse(b.test)
        for n in ast.walk(b)
    }
    every: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        every.update(n for n in names if n.startswith("ignitevm"))
    return every


def main() -> int:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    bad = []
    for mod, path in modules.items():
        every = imports(path)
        # a package's __init__ is a dependency of its modules only when imported by name
        graph[mod] = {m for m in every if m in modules and m != mod}
        for target in (m for m in every if m in modules):
            if layer_of(target) > layer_of(mod) and not mod.startswith(target + "."):
                bad.append(f"layer: {mod} imports {target}")
    seen: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        seen[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if seen.get(n) == 1:
                bad.append("cycle: " + " -> ".join([*stack[stack.index(n) :], n]))
            elif n not in seen:
                visit(n)
        stack.pop()
        seen[m] = 2

    for m in sorted(graph):
        if m not in seen:
            visit(m)
    for line in sorted(set(bad)):
        print(line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
