"""The state directory store and its locks (docs/internals.md, "State directory")."""

from ignitevm.store.locks import file_lock, hold_lock, is_locked
from ignitevm.store.store import DEFAULT_STATE_DIR, METADATA, Store, resolve_state_dir

__all__ = [
    "DEFAULT_STATE_DIR",
    "METADATA",
    "Store",
    "file_lock",
    "hold_lock",
    "is_locked",
    "resolve_state_dir",
]
