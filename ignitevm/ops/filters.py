"""`ignite ps -f`: Ignite's filters, `{{.ObjectMeta.Name}}=x` with =, ==, !=, =~ and !~; a comma
separates filters that must all match (docs/cli.md). The left side is a Go template, rendered as
`ignite ps -t` renders it (ops/gotemplate.py): `{{.ObjectMeta.Labels}}=~env:test` matches the Go
map `map[env:test]`, `{{.Spec.Memory}}=512.0 MB` Ignite's size."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ignitevm.api import VM
from ignitevm.errors import ValidationError
from ignitevm.ops.gotemplate import Template, compile_template
from ignitevm.ops.govalues import Struct, go_object

_FILTER = re.compile(r"^\s*(\{\{.*?\}\})\s*(!=|=~|!~|==|=)(.*)$")


@dataclass(frozen=True)
class Filter:
    text: str
    template: Template
    op: str
    value: str

    def matches(self, data: Struct) -> bool:
        """Does the object (as go_object() gives it) pass? ValidationError on an unknown field."""
        try:
            actual = self.template.execute(data)
        except ValidationError as exc:
            exc.add_context(f"filter {self.text!r}")
            raise
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
        key, op, value = match.groups()
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValidationError(f"filter {part!r}: bad regular expression: {exc}") from None
        try:
            template = compile_template(key)
        except ValidationError as exc:
            exc.add_context(f"filter {part!r}")
            raise
        filters.append(Filter(part.strip(), template, op, value))
    return filters


def match_all(filters: list[Filter], vm: VM) -> bool:
    data = go_object(vm)
    return all(f.matches(data) for f in filters)
