"""Go's text/template, the part `ignite ps -t`, `inspect -t` and `ps -f` need (docs/cli.md):
literal text and ``{{actions}}`` with ``{{-``/``-}}`` trimming and comments; field chains
(``.Spec.Memory``, ``$.ObjectMeta.Name``), string/number/bool literals, parentheses and pipelines;
``if``/``else if``/``else``, ``range`` and ``with`` blocks; the functions index, len, print,
printf, println, eq, ne, lt, le, gt, ge, and, or, not. Values print as Go prints them
(ops/govalues.py). Not supported: variables other than ``$``, define/template/block."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from ignitevm.api import VM, Image, Kernel, Snapshot
from ignitevm.errors import ValidationError
from ignitevm.ops.gofuncs import FUNCTIONS
from ignitevm.ops.govalues import go_object, is_true, iterate, lookup_field, print_value

_HINT = "Go text/template syntax, e.g. '{{.ObjectMeta.Name}} {{.Spec.Memory}}' (see docs/cli.md)"

# --- parse tree ----------------------------------------------------------------------------------
# (NamedTuples: a frozen dataclass costs ~1 ms to define, and `ignite ps -t` should start fast)


class Field(NamedTuple):  # .A.B, or `$.A.B` (root), or `.` alone (chain empty)
    chain: tuple[str, ...]
    root: bool = False


class Literal(NamedTuple):
    value: Any


class Func(NamedTuple):
    name: str


class Sub(NamedTuple):  # (pipeline).A.B
    pipeline: Pipeline
    chain: tuple[str, ...] = ()


Operand = Field | Literal | Func | Sub
Command = tuple[Operand, ...]
Pipeline = tuple[Command, ...]


class Block(NamedTuple):  # if / range / with
    kind: str
    pipeline: Pipeline
    body: list[Node]
    orelse: list[Node]


Node = str | Pipeline | Block

# --- lexing ---------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<str>"(?:[^"\\\n]|\\.)*")
      | (?P<raw>`[^`]*`)
      | (?P<num>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+))
      | (?P<field>(?:\.[A-Za-z_]\w*)+|\.)
      | (?P<var>\$\w*(?:\.[A-Za-z_]\w*)*)
      | (?P<ident>[A-Za-z_]\w*)
      | (?P<punct>[|()])
    """,
    re.VERBOSE,
)
_KEYWORDS = {"if", "else", "end", "range", "with"}
_UNSUPPORTED = {"define", "template", "block", "break", "continue"}


def _split(text: str) -> list[tuple[str, str]]:
    """("text", ...) and ("action", ...) pieces, with {{- -}} trimming applied."""
    pieces: list[tuple[str, str]] = []
    pos = 0
    while (start := text.find("{{", pos)) >= 0:
        end = text.find("}}", start + 2)
        if end < 0:
            raise ValidationError(f"template {text!r}: unclosed action", hint=_HINT)
        literal, action = text[pos:start], text[start + 2 : end]
        if action.startswith("- ") or action == "-":
            literal, action = literal.rstrip(), action[1:]
        pieces.append(("text", literal))
        pos = end + 2
        if action.endswith(" -"):
            action = action[:-1]
            pos = len(text) - len(text[pos:].lstrip())
        pieces.append(("action", action.strip()))
    pieces.append(("text", text[pos:]))
    return [(kind, s) for kind, s in pieces if kind == "action" or s]


def _tokens(action: str, template: str) -> list[tuple[str, str, int, int]]:
    out = []
    pos = 0
    while pos < len(action):
        match = _TOKEN.match(action, pos)
        if match is None and action.startswith(":=", pos):
            raise ValidationError(
                f"template {template!r}: variables are not supported, only $ (the object)",
                hint=_HINT,
            )
        if match is None:
            raise ValidationError(
                f"template {template!r}: unexpected {action[pos]!r} in {{{{{action}}}}}", hint=_HINT
            )
        kind = match.lastgroup or ""
        if kind != "space":
            out.append((kind, match.group(), match.start(), match.end()))
        pos = match.end()
    return out


# --- parsing --------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pieces = _split(text)
        self.at = 0

    def error(self, message: str) -> ValidationError:
        return ValidationError(f"template {self.text!r}: {message}", hint=_HINT)

    def parse_list(self, stops: set[str]) -> tuple[list[Node], str]:
        """Nodes up to one of the ``stops`` keywords ("" = the end); returns the stop found."""
        nodes: list[Node] = []
        while self.at < len(self.pieces):
            kind, value = self.pieces[self.at]
            self.at += 1
            if kind == "text":
                nodes.append(value)
                continue
            if value.startswith("/*"):
                if not value.endswith("*/"):
                    raise self.error("unclosed comment")
                continue
            word = value.split(None, 1)[0] if value else ""
            if word in ("end", "else"):
                if word not in stops:
                    raise self.error(f"unexpected {{{{{word}}}}}")
                if word == "else" and value.split()[1:2] == ["if"]:
                    # the rest is an `if` of its own, ended by the same {{end}}
                    self.pieces[self.at - 1] = ("action", value[4:].strip())
                    self.at -= 1
                    return nodes, "else if"
                return nodes, word
            if word in _UNSUPPORTED:
                raise self.error(f"{{{{{word}}}}} is not supported")
            if word in ("if", "range", "with"):
                nodes.append(self.parse_block(word, value[len(word) :]))
            else:
                nodes.append(self.parse_pipeline(value))
        if stops != {""}:
            raise self.error("missing {{end}}")
        return nodes, ""

    def parse_block(self, kind: str, action: str) -> Block:
        pipeline = self.parse_pipeline(action)
        body, stop = self.parse_list({"end", "else"})
        orelse: list[Node] = []
        if stop == "else if":
            self.at += 1
            orelse = [self.parse_block("if", self.pieces[self.at - 1][1][2:])]
        elif stop == "else":
            orelse, _ = self.parse_list({"end"})
        return Block(kind, pipeline, body, orelse)

    def parse_pipeline(self, action: str) -> Pipeline:
        tokens = _tokens(action, self.text)
        if not tokens:
            raise self.error("missing value for command")
        pipeline, rest = self._pipeline(tokens, action)
        if rest:
            raise self.error(f"unexpected {rest[0][1]!r} in {{{{{action}}}}}")
        return pipeline

    def _pipeline(self, tokens: list[Any], action: str) -> tuple[Pipeline, list[Any]]:
        commands: list[Command] = []
        operands: list[Operand] = []
        while tokens and tokens[0][1] != ")":
            kind, value, _, _ = tokens.pop(0)
            if value == "|":
                if not operands:
                    raise self.error(f"missing command before '|' in {{{{{action}}}}}")
                commands.append(tuple(operands))
                operands = []
            elif value == "(":
                inner, tokens = self._pipeline(tokens, action)
                if not tokens:
                    raise self.error(f"unclosed '(' in {{{{{action}}}}}")
                close = tokens.pop(0)
                chain: tuple[str, ...] = ()
                if tokens and tokens[0][0] == "field" and tokens[0][2] == close[3]:
                    chain = tuple(tokens.pop(0)[1].split(".")[1:])
                operands.append(Sub(inner, chain))
            else:
                operands.append(self._operand(kind, value))
        if not operands:
            raise self.error(f"missing value for command in {{{{{action}}}}}")
        commands.append(tuple(operands))
        return tuple(commands), tokens

    def _operand(self, kind: str, value: str) -> Operand:
        if kind == "field":
            return Field(tuple(n for n in value.split(".") if n))
        if kind == "var":
            if value[1:2] not in ("", "."):
                raise self.error(f"variables are not supported ({value.split('.')[0]}); $ is")
            return Field(tuple(value.split(".")[1:]), root=True)
        if kind in ("str", "raw"):
            return Literal(_unquote(value) if kind == "str" else value[1:-1])
        if kind == "num":
            return Literal(float(value) if re.search(r"[.eE]", value) else int(value))
        if value in ("true", "false"):
            return Literal(value == "true")
        if value == "nil":
            raise self.error("nil is not a command")
        if value in _KEYWORDS:
            raise self.error(f"unexpected {value!r}")
        if value not in FUNCTIONS:
            raise self.error(f'function "{value}" not defined')
        return Func(value)


def _unquote(text: str) -> str:
    import json

    try:
        decoded: str = json.loads(text)
    except ValueError:
        decoded = text[1:-1].encode().decode("unicode_escape")
    return decoded


# --- execution ------------------------------------------------------------------------------------


class Template:
    """A parsed template (compile_template)."""

    def __init__(self, text: str, nodes: list[Node]) -> None:
        self.text = text
        self.nodes = nodes

    def render(self, obj: VM | Image | Kernel | Snapshot) -> str:
        """Execute on ``obj`` as Ignite's Go struct; ValidationError naming a bad field."""
        return self.execute(go_object(obj))

    def execute(self, data: Any) -> str:
        out: list[str] = []
        try:
            _walk(self.nodes, data, data, out)
        except ValidationError as exc:
            exc.message = f"template {self.text!r}: {exc.message}"
            raise
        return "".join(out)


def compile_template(text: str) -> Template:
    """Parse a Go template; ValidationError (naming the problem) if it is not valid."""
    nodes, _ = _Parser(text).parse_list({""})
    return Template(text, nodes)


def _walk(nodes: Sequence[Node], dot: Any, root: Any, out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, Block):
            value = _pipeline(node.pipeline, dot, root)
            if node.kind == "range":
                items = list(iterate(value))
                for item in items:
                    _walk(node.body, item, root, out)
                if not items:
                    _walk(node.orelse, dot, root, out)
            elif is_true(value):
                _walk(node.body, value if node.kind == "with" else dot, root, out)
            else:
                _walk(node.orelse, dot, root, out)
        else:
            out.append(print_value(_pipeline(node, dot, root)))


def _pipeline(pipeline: Pipeline, dot: Any, root: Any) -> Any:
    value: Any = _MISSING
    for command in pipeline:
        value = _command(command, dot, root, value)
    return value


_MISSING = object()  # no value piped into the command


def _command(command: Command, dot: Any, root: Any, piped: Any) -> Any:
    head, args = command[0], command[1:]
    if isinstance(head, Func):
        values = [_operand(arg, dot, root) for arg in args]
        if piped is not _MISSING:
            values.append(piped)
        return FUNCTIONS[head.name](*values)
    if args or piped is not _MISSING:
        raise ValidationError(f"can't give argument to non-function {_describe(head)}")
    return _operand(head, dot, root)


def _operand(operand: Operand, dot: Any, root: Any) -> Any:
    if isinstance(operand, Literal):
        return operand.value
    if isinstance(operand, Func):  # a function as an argument: called without arguments
        return FUNCTIONS[operand.name]()
    if isinstance(operand, Sub):
        value, chain = _pipeline(operand.pipeline, dot, root), operand.chain
    else:
        value, chain = (root if operand.root else dot), operand.chain
    for name in chain:
        value = lookup_field(value, name)
    return value


def _describe(operand: Operand) -> str:
    if isinstance(operand, Field):
        return ("$" if operand.root else "") + "".join("." + n for n in operand.chain) or "."
    return repr(operand.value) if isinstance(operand, Literal) else "(...)"
