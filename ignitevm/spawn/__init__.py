"""The detached per-VM supervisor (``python -m ignitevm.spawn VM_DIR``) and its controls.

The names below are imported on first use: the supervisor process itself needs only a few of
these modules, and every module it loads stays in its memory for the VM's lifetime."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ignitevm.spawn.attach import attach
    from ignitevm.spawn.client.console import ConsoleFollower, wait_for_boot
    from ignitevm.spawn.client.launch import launch
    from ignitevm.spawn.client.stop import (
        cleanup_stale,
        kill,
        kill_orphan,
        request_stop,
        wait_until_stopped,
    )
    from ignitevm.spawn.plan import LaunchPlan, read_plan
    from ignitevm.spawn.runtime import RuntimeState, RuntimeStatus, is_running, runtime_status

_LAZY = {
    "ConsoleFollower": "client.console",
    "attach": "attach",
    "cleanup_stale": "client.stop",
    "is_running": "runtime",
    "kill": "client.stop",
    "kill_orphan": "client.stop",
    "launch": "client.launch",
    "request_stop": "client.stop",
    "runtime_status": "runtime",
    "wait_for_boot": "client.console",
    "wait_until_stopped": "client.stop",
    "LaunchPlan": "plan",
    "read_plan": "plan",
    "RuntimeState": "runtime",
    "RuntimeStatus": "runtime",
}

__all__ = [
    "ConsoleFollower",
    "LaunchPlan",
    "RuntimeState",
    "RuntimeStatus",
    "attach",
    "cleanup_stale",
    "is_running",
    "kill",
    "kill_orphan",
    "launch",
    "read_plan",
    "request_stop",
    "runtime_status",
    "wait_for_boot",
    "wait_until_stopped",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"ignitevm.spawn.{module}"), name)
    globals()[name] = value
    return value
