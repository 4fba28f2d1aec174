"""The functions of Go's text/template that ops/gotemplate.py offers (docs/cli.md): index, len,
print, printf, println, eq, ne, lt, le, gt, ge, and, or, not. printf is Go's fmt.Sprintf with the
verbs %v %s %d %q %t %x %X %f %e %g and %%, the flags - + 0 and space, a width and a precision; a
verb that does not fit its operand prints as Go prints it: ``%!d(string=web)``, ``%!s(MISSING)``,
``%!(EXTRA int=1)``."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from ignitevm.errors import ValidationError
from ignitevm.ops.govalues import GoList, Stringer, format_value, go_type, is_true

_VERB = re.compile(r"%([-+# 0]*)(\d+)?(?:\.(\d+))?([a-zA-Z%])")


def sprintf(fmt: str, args: Sequence[Any]) -> str:
    out: list[str] = []
    used = pos = 0
    for match in _VERB.finditer(fmt):
        out.append(fmt[pos : match.start()])
        pos = match.end()
        flags, width, precision, verb = match.groups()
        if verb == "%":
            out.append("%")
            continue
        if used >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[used]
        used += 1
        text = _format(verb, arg, flags, None if precision is None else int(precision))
        out.append(_pad(text, flags, int(width or 0), numeric=verb in "dxXfeg"))
    out.append(fmt[pos:])
    if used < len(args):
        extra = ", ".join(f"{go_type(a)}={format_value(a)}" for a in args[used:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _format(verb: str, arg: Any, flags: str, precision: int | None) -> str:
    is_int = isinstance(arg, int) and not isinstance(arg, bool)
    text: str | None = None
    if verb == "v" or (verb == "s" and not is_int and not isinstance(arg, bool | float)):
        text = format_value(arg)
    elif verb == "q" and isinstance(arg, str | Stringer):
        text = quote(arg if isinstance(arg, str) else arg.text)
    elif verb == "t" and isinstance(arg, bool):
        text = "true" if arg else "false"
    elif verb == "d" and is_int:
        text = f"{arg:+d}" if "+" in flags else (f"{arg: d}" if " " in flags else str(arg))
    elif verb in "xX" and (is_int or isinstance(arg, str)):
        text = format(arg, "x") if is_int else arg.encode().hex()
        text = text.upper() if verb == "X" else text
    elif verb in "feg" and isinstance(arg, float):
        text = format(arg, f"{'+' if '+' in flags else ''}.{6 if precision is None else precision}"
                           f"{verb}")  # fmt: skip
    if text is None:
        return f"%!{verb}({go_type(arg)}={format_value(arg)})"
    if precision is not None and verb in "sv":
        text = text[:precision]
    return text


def _pad(text: str, flags: str, width: int, *, numeric: bool) -> str:
    if len(text) >= width:
        return text
    if "-" in flags:
        return text.ljust(width)
    if "0" in flags and numeric:
        sign = text[0] if text[:1] in "+- " else ""
        return sign + text[len(sign) :].rjust(width - len(sign), "0")
    return text.rjust(width)


def quote(text: str) -> str:
    """Go's strconv.Quote."""
    escapes = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\a": "\\a",
               "\b": "\\b", "\f": "\\f", "\v": "\\v"}  # fmt: skip
    out = []
    for ch in text:
        if ch in escapes:
            out.append(escapes[ch])
        elif not ch.isprintable():
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x80 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


# --- functions ------------------------------------------------------------------------------------


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(item, dict):
            item = item.get(key, "")  # a missing key gives the zero value, ""
        elif isinstance(item, GoList | str) and isinstance(key, int):
            seq = item.items if isinstance(item, GoList) else item
            if not 0 <= key < len(seq):
                raise ValidationError(f"error calling index: index out of range: {key}")
            item = seq[key]
        else:
            raise ValidationError(f"error calling index: can't index item of type {go_type(item)}")
    return item


def _len(item: Any) -> int:
    if isinstance(item, str | dict):
        return len(item)
    if isinstance(item, GoList):
        return len(item.items)
    raise ValidationError(f"error calling len: len of type {go_type(item)}")


def _sprint(*args: Any) -> str:
    # fmt.Sprint: a space between operands when neither is a string
    out = ""
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out += " "
        out += format_value(arg)
    return out


def _compare(name: str, test: Callable[[Any, Any], bool]) -> Callable[..., bool]:
    def compare(a: Any, *others: Any) -> bool:
        if not others:
            raise ValidationError(f"error calling {name}: missing argument for comparison")
        for b in others:
            a_basic, b_basic = _basic(a), _basic(b)
            if type(a_basic) is not type(b_basic) and not (
                isinstance(a_basic, int | float) and isinstance(b_basic, int | float)
            ):
                raise ValidationError(f"error calling {name}: incompatible types for comparison")
            if test(a_basic, b_basic):
                return name != "ne"
        return name == "ne"

    return compare


def _basic(value: Any) -> Any:
    if isinstance(value, bool | int | float | str):
        return value
    return format_value(value)  # Stringer types compare by their text


def _and(*args: Any) -> Any:
    for arg in args:
        if not is_true(arg):
            return arg
    return args[-1]


def _or(*args: Any) -> Any:
    for arg in args:
        if is_true(arg):
            return arg
    return args[-1]


def _printf(fmt: str, *args: Any) -> str:
    return sprintf(fmt, args)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "index": _index,
    "len": _len,
    "print": _sprint,
    "printf": _printf,
    "println": lambda *args: " ".join(format_value(a) for a in args) + "\n",
    "not": lambda arg: not is_true(arg),
    "and": _and,
    "or": _or,
    "eq": _compare("eq", lambda a, b: a == b),
    "ne": _compare("ne", lambda a, b: a == b),
    "lt": _compare("lt", lambda a, b: a < b),
    "le": _compare("le", lambda a, b: a <= b),
    "gt": _compare("gt", lambda a, b: a > b),
    "ge": _compare("ge", lambda a, b: a >= b),
}
