"""Data sizes as Ignite reads and prints them ("512MB", "4GB": binary units, 1 MB = 2**20 bytes).

Ignite's ``meta.Size`` wraps ``c2h5oh/datasize``: it parses an unsigned integer followed by an
optional unit (case-insensitive, ``K``/``KB``/``KiB``/``kilobyte``... up to ``E``; all binary),
rejects ``Mb``-style bit units, marshals as the largest unit that divides the value exactly
("1536MB"), and prints for humans with one decimal ("1.5 GB"). We also accept decimals ("1.5GiB",
rounded to the nearest byte), which Ignite did not.
"""

from __future__ import annotations

import re
from functools import total_ordering
from typing import Any

from ignitevm.errors import ValidationError

_UNIT_NAMES = ("", "k", "m", "g", "t", "p", "e")
_UNITS: dict[str, int] = {"": 1, "b": 1, "byte": 1, "bytes": 1}
for _power, (_short, _long) in enumerate(
    zip(_UNIT_NAMES[1:], ("kilo", "mega", "giga", "tera", "peta", "exa"), strict=True), start=1
):
    for _name in (_short, _short + "b", _short + "ib", _long, _long + "byte", _long + "bytes"):
        _UNITS[_name] = 1 << (10 * _power)

# datasize refuses these: a capital prefix with a lower-case "b" means bits.
_BIT_UNITS = frozenset({"Kb", "Mb", "Gb", "Tb", "Pb", "Eb"})
_SIZE_PATTERN = r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*"
_MAX = (1 << 64) - 1
_HINT = 'write a whole number with a unit, for example "512MB", "4GB" or "1.5GiB" (binary units)'


@total_ordering
class Size:
    """A size in bytes. ``Size.parse("512MB").bytes == 512 * 2**20``; ``str()`` gives "512MB"."""

    __slots__ = ("bytes",)
    bytes: int

    def __init__(self, nbytes: int) -> None:
        if isinstance(nbytes, bool) or not isinstance(nbytes, int):
            raise TypeError(f"Size takes an int number of bytes, not {type(nbytes).__name__}")
        if not 0 <= nbytes <= _MAX:
            raise ValueError(f"size {nbytes} is out of range")
        object.__setattr__(self, "bytes", nbytes)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Size is immutable")

    @classmethod
    def parse(cls, text: str | int | Size, *, allow_zero: bool = False) -> Size:
        """Parse "512MB", "4G", "1.5GiB" or a byte count; ValidationError naming ``text`` if bad."""
        if isinstance(text, Size):
            nbytes = text.bytes
        elif isinstance(text, bool):
            raise ValidationError(f"invalid size {text!r}", hint=_HINT)
        elif isinstance(text, int):
            nbytes = text
        elif isinstance(text, str):
            nbytes = _parse_text(text)
        else:
            raise ValidationError(f"invalid size {text!r}", hint=_HINT)
        if nbytes < 0:
            raise ValidationError(f"invalid size {text!r}: it is negative", hint=_HINT)
        if nbytes > _MAX:
            raise ValidationError(f"invalid size {text!r}: it is too large", hint=_HINT)
        if nbytes == 0 and not allow_zero:
            raise ValidationError(f"invalid size {text!r}: it must be more than zero", hint=_HINT)
        return cls(nbytes)

    @classmethod
    def from_mib(cls, mib: int) -> Size:
        return cls(mib << 20)

    def mib(self) -> int:
        """Whole MiB, rounded down (QEMU's ``-m`` takes MiB)."""
        return self.bytes >> 20

    def __str__(self) -> str:
        """The serialized form, as Ignite writes it: the largest exact unit ("1536MB", "0B")."""
        if self.bytes == 0:
            return "0B"
        for power in range(len(_UNIT_NAMES) - 1, 0, -1):
            unit = 1 << (10 * power)
            if self.bytes % unit == 0:
                return f"{self.bytes // unit}{_UNIT_NAMES[power].upper()}B"
        return f"{self.bytes}B"

    def human(self) -> str:
        """Ignite's ``Size.String()`` (datasize ``HR()``) for ``ignite ps``: "4.0 GB", "512.0 MB".

        Like datasize, a unit is used only for values strictly above it, so exactly 1 GiB prints as
        "1024.0 MB".
        """
        for power in range(len(_UNIT_NAMES) - 1, 0, -1):
            unit = 1 << (10 * power)
            if self.bytes > unit:
                return f"{self.bytes / unit:.1f} {_UNIT_NAMES[power].upper()}B"
        return f"{self.bytes} B"

    def __repr__(self) -> str:
        return f"Size({self})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Size):
            return self.bytes == other.bytes
        return NotImplemented

    def __lt__(self, other: object) -> bool:
        if isinstance(other, Size):
            return self.bytes < other.bytes
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.bytes)

    def __reduce__(self) -> tuple[type[Size], tuple[int]]:
        return (Size, (self.bytes,))

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(
            _validate_for_pydantic, serialization=core_schema.to_string_ser_schema()
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict[str, Any]:
        return {"type": "string", "examples": ["512MB", "4GB"]}


def _parse_text(text: str) -> int:
    match = re.fullmatch(_SIZE_PATTERN, text)  # re caches the compiled pattern
    if match is None:
        raise ValidationError(f"invalid size {text!r}", hint=_HINT)
    number, unit = match.groups()
    if unit in _BIT_UNITS:
        raise ValidationError(
            f"invalid size {text!r}: {unit!r} means bits", hint=f'use bytes, e.g. "{unit[0]}B"'
        )
    factor = _UNITS.get(unit.lower())
    if factor is None:
        raise ValidationError(f"invalid size {text!r}: unknown unit {unit!r}", hint=_HINT)
    whole, _, frac = number.partition(".")
    scale = 10 ** len(frac)
    numerator = (int(whole or "0") * scale + int(frac or "0")) * factor
    # round half up to whole bytes, in integers: no float error for large sizes
    rounded: int = (2 * numerator + scale) // (2 * scale)
    return rounded


def _validate_for_pydantic(value: Any) -> Size:
    # Pydantic turns ValueError into its own error carrying the field's location; the model
    # loader turns that into our ValidationError naming the field and the file.
    try:
        return Size.parse(value, allow_zero=True)
    except ValidationError as exc:
        raise ValueError(exc.message) from None
