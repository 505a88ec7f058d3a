"""FHIRPath syntax: lexer, parser, syntax tree and renderer (https://hl7.org/fhir/R4/fhirpath.html)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

# ---------------------------------------------------------------- syntax tree


@dataclass(frozen=True, slots=True)
class Literal:
    value: str | bool | int | float


@dataclass(frozen=True, slots=True)
class EmptySet:
    pass


@dataclass(frozen=True, slots=True)
class Var:
    name: str  # without the % (or "$this")


@dataclass(frozen=True, slots=True)
class Member:
    base: Node | None  # None: navigate from the focus
    name: str


@dataclass(frozen=True, slots=True)
class Call:
    base: Node | None
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Index:
    base: Node
    index: Node


@dataclass(frozen=True, slots=True)
class TypeOp:
    op: str  # "is" | "as"
    operand: Node
    type_name: str


@dataclass(frozen=True, slots=True)
class Binary:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Unary:
    op: str
    operand: Node


Node = Literal | EmptySet | Var | Member | Call | Index | TypeOp | Binary | Unary


# ---------------------------------------------------------------- lexer and parser

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<datetime>@[0-9T:.+\-Z]+)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)
  | (?P<var>%[A-Za-z_][A-Za-z0-9_]*|%`[^`]+`|%'[^']+'|\$this|\$index|\$total)
  | (?P<op><=|>=|!=|!~|\{\}|[.()\[\],|=~<>+\-*/&])
)""",
    re.VERBOSE,
)
_ESCAPES = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_KEYWORDS_BINARY = {"and", "or", "xor", "implies", "div", "mod", "in", "contains"}


def _unescape(body: str) -> str:
    return re.sub(
        r"\\(u[0-9a-fA-F]{4}|.)",
        lambda m: (
            chr(int(m.group(1)[1:], 16)) if len(m.group(1)) == 5 else _ESCAPES.get(m.group(1), m.group(1))
        ),
        body,
    )


def tokenize(text: str) -> list[tuple[str, str]]:
    """FHIRPath text -> [(kind, text)], kind in string number ident var op; raises ValueError."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"unexpected character at {pos} in {text!r}")
        kind = m.lastgroup
        assert kind is not None
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


class _Parser:
    """Precedence climbing over the FHIRPath grammar (http://hl7.org/fhirpath/N1/#grammar)."""

    # lowest to highest precedence; each level is left-associative
    LEVELS: tuple[tuple[str, ...], ...] = (
        ("implies",),
        ("or", "xor"),
        ("and",),
        ("in", "contains"),
        ("=", "~", "!=", "!~"),
        ("<", ">", "<=", ">="),
        ("|",),
        ("is", "as"),
        ("+", "-", "&"),
        ("*", "/", "div", "mod"),
    )

    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise ValueError(f"expected {value or 'a token'} at token {self.pos}, got {tok}")
        self.pos += 1
        return tok

    def at_op(self, ops: tuple[str, ...]) -> str | None:
        tok = self.peek()
        if (
            tok is not None
            and tok[1] in ops
            and (tok[0] == "op" or tok[1] in _KEYWORDS_BINARY | {"is", "as"})
        ):
            return tok[1]
        return None

    def parse(self) -> Node:
        node = self.expression(0)
        if self.peek() is not None:
            raise ValueError(f"unexpected {self.peek()} in expression")
        return node

    def expression(self, level: int) -> Node:
        if level == len(self.LEVELS):
            return self.unary()
        left = self.expression(level + 1)
        while (op := self.at_op(self.LEVELS[level])) is not None:
            self.take()
            if op in ("is", "as"):
                left = TypeOp(op, left, self.type_specifier())
            else:
                left = Binary(op, left, self.expression(level + 1))
        return left

    def type_specifier(self) -> str:
        kind, name = self.take()
        if kind != "ident":
            raise ValueError(f"expected a type name, got {name!r}")
        while (tok := self.peek()) is not None and tok[1] == "." and self.pos + 1 < len(self.tokens):
            self.take(".")
            name += "." + self.take()[1]
        return name.strip("`")

    def unary(self) -> Node:
        tok = self.peek()
        if tok is not None and tok[0] == "op" and tok[1] in ("+", "-"):
            self.take()
            return Unary(tok[1], self.unary())
        return self.postfix()

    def postfix(self) -> Node:
        node = self.term()
        while (tok := self.peek()) is not None and tok[1] in (".", "["):
            self.take()
            if tok[1] == "[":
                node = Index(node, self.expression(0))
                self.take("]")
            else:
                node = self.invocation(node)
        return node

    def invocation(self, base: Node | None) -> Node:
        kind, name = self.take()
        if kind != "ident":
            raise ValueError(f"expected a name after '.', got {name!r}")
        name = name.strip("`")
        tok = self.peek()
        if tok is not None and tok[1] == "(":
            self.take("(")
            args: list[Node] = []
            if (nxt := self.peek()) is not None and nxt[1] != ")":
                args.append(self.expression(0))
                while (nxt := self.peek()) is not None and nxt[1] == ",":
                    self.take(",")
                    args.append(self.expression(0))
            self.take(")")
            return Call(base, name, tuple(args))
        return Member(base, name)

    def term(self) -> Node:
        tok = self.peek()
        if tok is None:
            raise ValueError("unexpected end of expression")
        kind, text = tok
        if kind == "string":
            self.take()
            return Literal(_unescape(text[1:-1]))
        if kind == "number":
            self.take()
            return Literal(float(text) if "." in text else int(text))
        if kind == "var":
            self.take()
            return Var(text[1:].strip("`'") if text.startswith("%") else text)
        if kind == "datetime":
            raise ValueError("date/time literals are not supported")
        if text == "(":
            self.take()
            node = self.expression(0)
            self.take(")")
            return node
        if text == "{}":
            self.take()
            return EmptySet()
        if kind == "ident" and text in ("true", "false"):
            self.take()
            return Literal(text == "true")
        if kind == "ident":
            return self.invocation(None)
        raise ValueError(f"unexpected {text!r}")


@functools.lru_cache(maxsize=4096)
def parse(text: str) -> Node:
    """Parse FHIRPath text into a syntax tree (raises ValueError on a syntax error)."""
    return _Parser(text).parse()


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def render(node: Node) -> str:
    """The FHIRPath text of a syntax tree, fully parenthesised (parse(render(n)) == n)."""
    match node:
        case Literal(value=bool() as b):
            return "true" if b else "false"
        case Literal(value=str() as s):
            return _quote(s)
        case Literal(value=v):
            return repr(v)
        case EmptySet():
            return "{}"
        case Var(name=name):
            return name if name.startswith("$") else "%" + name
        case Member(base=None, name=name):
            return f"`{name}`"
        case Member(base=base, name=name) if base is not None:
            return f"{_render_postfix_base(base)}.`{name}`"
        case Call(base=base, name=name, args=args):
            call = f"`{name}`({', '.join(render(a) for a in args)})"
            return call if base is None else f"{_render_postfix_base(base)}.{call}"
        case Index(base=base, index=index):
            return f"{_render_postfix_base(base)}[{render(index)}]"
        case TypeOp(op=op, operand=operand, type_name=t):
            return f"({render(operand)} {op} {t})"
        case Binary(op=op, left=left, right=right):
            return f"({render(left)} {op} {render(right)})"
        case Unary(op=op, operand=operand):
            return f"{op}({render(operand)})"
    raise TypeError(node)


def _render_postfix_base(node: Node) -> str:
    if isinstance(node, Member | Call | Index | Var):
        return render(node)
    return f"({render(node)})"
