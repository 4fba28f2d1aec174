"""The state directory store and its locks (docs/internals.md, "State directory").

The locks load at once (the supervisor uses them and must stay small); ``Store`` and the rest
load on first use, since they bring pydantic."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ignitevm.store.locks import file_lock, hold_lock, is_locked, try_hold_lock

if TYPE_CHECKING:
    from ignitevm.store.store import DEFAULT_STATE_DIR, METADATA, Store, resolve_state_dir

_LAZY = {"DEFAULT_STATE_DIR", "METADATA", "Store", "resolve_state_dir"}

__all__ = [
    "DEFAULT_STATE_DIR",
    "METADATA",
    "Store",
    "file_lock",
    "hold_lock",
    "is_locked",
    "resolve_state_dir",
    "try_hold_lock",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module("ignitevm.store.store"), name)
    raise AttributeError(f"module 'ignitevm.store' has no attribute {name!r}")
