"""`ignite ps -f`: Ignite's filters, `{{.ObjectMeta.Name}}=x` with =, !=, =~ and !~; a comma
separates filters that must all match."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ignitevm.errors import ValidationError

_FILTER = re.compile(
    r"^\s*\{\{\s*(?:index\s+)?\.([A-Za-z0-9_.]+)(?:\s+\"([^\"]+)\")?\s*\}\}\s*"
    r"(!=|=~|!~|==|=)(.*)$"
)
# Go field names of Ignite's types -> our JSON field names, where they differ beyond case.
_ALIASES = {"objectmeta": "metadata", "typemeta": "", "oci": "oci"}


@dataclass(frozen=True)
class Filter:
    path: tuple[str, ...]
    op: str
    value: str

    def matches(self, obj: dict[str, Any]) -> bool:
        actual = _lookup(obj, self.path)
        if self.op in ("=", "=="):
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.search(self.value, actual) is not None
        return found if self.op == "=~" else not found


def parse_filters(text: str) -> list[Filter]:
    filters = []
    for part in (p for p in text.split(",") if p.strip()):
        match = _FILTER.match(part)
        if match is None:
            raise ValidationError(
                f"filter {part!r} is not {{{{.Field.Path}}}}<op>value",
                hint="for example: -f '{{.ObjectMeta.Name}}=my-vm' (ops: =, !=, =~, !~)",
            )
        path, key, op, value = match.groups()
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValidationError(f"filter {part!r}: bad regular expression: {exc}") from None
        # Go's {{index .ObjectMeta.Labels "a.b/c"}} names a map key that has dots
        filters.append(Filter(_normalize(path) + ((key.lower(),) if key else ()), op, value))
    return filters


def _normalize(path: str) -> tuple[str, ...]:
    keys = []
    for key in path.split("."):
        lowered = key.lower()
        alias = _ALIASES.get(lowered, lowered)
        if alias:
            keys.append(alias)
    return tuple(keys)


def _lookup(obj: Any, path: tuple[str, ...]) -> str:
    for key in path:
        if not isinstance(obj, dict):
            return ""
        by_lower = {k.lower(): v for k, v in obj.items()}
        obj = by_lower.get(key, "")
    if isinstance(obj, bool):
        return "true" if obj else "false"
    return "" if obj is None else str(obj)


def match_all(filters: list[Filter], obj: dict[str, Any]) -> bool:
    return all(f.matches(obj) for f in filters)
