"""ignitevm: Weave Ignite, "the GitOps VM", in Python, as a library and a CLI.

    import ignitevm

    client = ignitevm.Client()
    with client.vms.run("ignitevm/default", memory="256MB") as vm:
        print(vm.exec("uname -r", check=True).stdout)

The public API is ``__all__`` (docs/library.md); every other module is private and may change.
Importing ``ignitevm`` is cheap: the names load on first use.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not `typing`'s: importing typing costs a third of `import ignitevm`
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

__all__ = [
    "VM",
    "Client",
    "ExecResult",
    "Image",
    "Kernel",
    "Size",
    "Snapshot",
    "__version__",
    "errors",
]

# name -> the module that defines it (loaded on first access: `import ignitevm` stays cheap)
_LAZY = {
    "Client": "ignitevm.client",
    "VM": "ignitevm.client",
    "ExecResult": "ignitevm.client",
    "Image": "ignitevm.api",
    "Kernel": "ignitevm.api",
    "Snapshot": "ignitevm.api",
    "Size": "ignitevm.api",
}

if TYPE_CHECKING:
    from ignitevm import errors
    from ignitevm.api import Image, Kernel, Size, Snapshot
    from ignitevm.client import VM, Client, ExecResult


def __getattr__(name: str) -> Any:
    import importlib

    if name == "errors":
        return importlib.import_module("ignitevm.errors")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ignitevm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
