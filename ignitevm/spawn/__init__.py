"""The detached per-VM supervisor (``python -m ignitevm.spawn VM_DIR``) and its controls."""

from ignitevm.spawn.attach import attach
from ignitevm.spawn.control import (
    cleanup_stale,
    is_running,
    kill,
    launch,
    request_stop,
    runtime_status,
    wait_for_boot,
)
from ignitevm.spawn.plan import LaunchPlan, read_plan
from ignitevm.spawn.runtime import RuntimeState, RuntimeStatus

__all__ = [
    "LaunchPlan",
    "RuntimeState",
    "RuntimeStatus",
    "attach",
    "cleanup_stale",
    "is_running",
    "kill",
    "launch",
    "read_plan",
    "request_stop",
    "runtime_status",
    "wait_for_boot",
]
