"""Plain-JSON records of frozen dataclasses: one way to write and read launch.json,
runtime.json and network.json (docs/architecture.md "Records").

No pydantic: the supervisor reads and writes these and stays small. ``to_json`` turns a
dataclass (nested dataclasses, paths, enums, tuples) into JSON data; ``from_json`` reads it back
by the dataclass's type hints, ignores unknown keys (a newer writer), uses defaults for missing
ones (an older writer) and raises ``RecordError`` for anything that does not fit, so a damaged
file is refused rather than half read.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from enum import Enum
from pathlib import Path, PurePath
from typing import Any, TypeVar

from ignitevm.fsutil import PUBLIC_MODE, write_json_atomic

T = TypeVar("T")
_HINTS: dict[type, dict[str, Any]] = {}


class RecordError(ValueError):
    """A record does not match its dataclass (damaged, truncated, hand-edited)."""


def to_json(obj: Any) -> Any:
    """JSON data for a dataclass instance (recursively), path, enum, tuple, list or dict."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, list | tuple):
        return [to_json(item) for item in obj]
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    return obj


def from_json(cls: type[T], data: Any) -> T:
    """An instance of the dataclass ``cls`` from ``data``; RecordError if it does not fit."""
    if not isinstance(data, dict):
        raise RecordError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            values[f.name] = _convert(hints[f.name], data[f.name], f"{cls.__name__}.{f.name}")
    try:
        return cls(**values)
    except TypeError as exc:  # a required field is missing
        raise RecordError(f"{cls.__name__}: {exc}") from None


def write_record(path: Path, obj: Any, *, fsync: bool = False, mode: int = PUBLIC_MODE) -> None:
    write_json_atomic(path, to_json(obj), fsync=fsync, mode=mode)


def read_record(cls: type[T], path: Path) -> T:
    """Read ``path`` as a ``cls``; OSError if unreadable, RecordError if damaged."""
    try:
        data = json.loads(path.read_bytes())
    except ValueError as exc:
        raise RecordError(f"{path}: invalid JSON: {exc}") from None
    return from_json(cls, data)


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, where)
            except RecordError as exc:
                errors.append(str(exc))
        raise RecordError("; ".join(errors) or f"{where}: unexpected null")
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise RecordError(f"{where}: expected a list, got {type(value).__name__}")
        item = args[0] if args else Any
        items = [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected an object, got {type(value).__name__}")
        item = args[1] if len(args) == 2 else Any
        return {str(k): _convert(item, v, f"{where}.{k}") for k, v in value.items()}
    return _convert_plain(hint, value, where)


def _convert_plain(hint: Any, value: Any, where: str) -> Any:
    if hint is Any:
        return value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_json(hint, value)
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError:
            raise RecordError(f"{where}: {value!r} is not a {hint.__name__}") from None
    if hint is Path:
        if not isinstance(value, str):
            raise RecordError(f"{where}: expected a path, got {type(value).__name__}")
        return Path(value)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and type(value) is hint:
        return value
    raise RecordError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")
