"""Printing: Ignite-style aligned tables, ages, sizes, Go templates."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ignitevm.ops.gotemplate import Template


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns separated by at least two spaces, like Ignite's (and Docker's) tabwriter.
    Control characters are printed escaped: a name stored by an older version may hold an
    ESC sequence, which must not reach the terminal."""
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    click.echo("\n".join(lines))


def printable(text: str) -> str:
    """``text`` with every non-printable character as its Python escape (``\\x1b``)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def format_age(when: datetime | None, now: datetime | None = None) -> str:
    """'42s', '3m', '5h', '2d' — Ignite prints ages this way in its tables."""
    if when is None:
        return "?"
    now = now or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = max(0, int((now - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def format_bytes(n: int) -> str:
    """'3.0 GB', '512.0 MB' (binary units, as Ignite's ps prints them)."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value:.1f} TB"


def compile_go_template(text: str) -> Template | None:
    """``-t/--template`` of ps and inspect (docs/cli.md); None when not given. The template module
    is imported only then: `ignite ps` must start fast."""
    if not text:
        return None
    from ignitevm.ops.gotemplate import compile_template

    return compile_template(text)
