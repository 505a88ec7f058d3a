"""Compiled FHIRPath extractors for search parameter expressions (https://hl7.org/fhir/R4/fhirpath.html).

A search parameter's expression is parsed once and compiled, with the static element types of the
R4 model (search/data/elements.json), into plain Python closures that walk the resource's JSON dict.
Compiling with types resolves choice elements (`Observation.value as Quantity` reads
`valueQuantity`), lets `as`/`ofType`/`is` be decided once at compile time, and tells the indexer the
FHIR type of every element it gets back (an Identifier and a ContactPoint look alike in JSON).

The compiled form is a tuple of branches `(fn, type)`: `fn(items, root)` maps a collection of input
elements to the output elements, all of FHIR type `type`. A union or a choice element gives several
branches. Supported: paths through lists, `|`, `where(...)`, `exists()`, `empty()`, `not()`,
`first()`, `as`/`.as()`/`ofType()`/`is`, `resolve()` (only inside `is`/`as`/`ofType`, by the
reference's type), `extension('url')`, `[n]`, `=`/`!=`, `and`/`or`, literals, `%resource`,
`$this`. Anything else falls back to fhirpathpy evaluated on the dict (with element types then
inferred from the JSON shape by the indexer: type `"*"`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from fhir_server.fhirpath.syntax import (
    Binary,
    Call,
    EmptySet,
    Index,
    Literal,
    Member,
    Node,
    TypeOp,
    Var,
    parse,
    render,
)

ELEMENTS = Path(__file__).resolve().parent.parent / "search" / "data" / "elements.json"

Fn = Callable[[list[Any], dict[str, Any]], list[Any]]
UNKNOWN = "*"  # element type of fallback results: infer from the JSON shape
RESOLVED = "@resolved"  # type of resolve() results: the referenced resource type name (a str)


class Unsupported(Exception):
    """The expression uses FHIRPath this compiler does not handle (the caller falls back)."""


# ---------------------------------------------------------------- the R4 type model


@dataclass(frozen=True)
class TypeModel:
    """Element types per R4 type (resources, backbone elements by path, complex types)."""

    types: dict[str, dict[str, str | list[str]]]
    parents: dict[str, str]

    def is_subtype(self, type_name: str, of: str) -> bool:
        while type_name:
            if type_name == of:
                return True
            type_name = self.parents.get(type_name, "")
        return False

    def is_type_name(self, name: str) -> bool:
        return name in self.types or name in self.parents or name in ("Resource", "DomainResource")


@functools.cache
def type_model() -> TypeModel:
    """The R4 element model generated from the StructureDefinitions (loaded once)."""
    raw = orjson.loads(ELEMENTS.read_bytes())
    return TypeModel(types=raw["types"], parents=raw["parents"])


# FHIRPath System types named in R4 expressions (`value.as(DateTime)`), as the FHIR types they mean.
_SYSTEM_TYPES = {
    "String": "string",
    "Boolean": "boolean",
    "Integer": "integer",
    "Decimal": "decimal",
    "Date": "date",
    "DateTime": "dateTime",
    "Time": "time",
}


def _type_name(name: str) -> str:
    for prefix in ("FHIR.", "System."):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return _SYSTEM_TYPES.get(name, name)


# ---------------------------------------------------------------- runtime helpers


def reference_type(ref: Any) -> str | None:
    """The resource type a Reference points at: from `reference` (relative or absolute, any
    `_history` dropped) or else `type`; None for contained (`#x`), urn: and unknown references."""
    if ref.__class__ is not dict:
        return None
    value = ref.get("reference")
    if isinstance(value, str) and value and not value.startswith("#"):
        parts = value.split("/")
        if len(parts) >= 4 and parts[-2] == "_history":
            parts = parts[:-2]
        if len(parts) >= 2 and parts[-2][:1].isupper():
            return parts[-2]
        return None
    kind = ref.get("type")
    return kind if isinstance(kind, str) else None


def _members(keys: tuple[str, ...]) -> Fn:
    """Navigate a chain of element names, flattening lists (nulls of primitive lists dropped)."""
    if len(keys) == 1:
        (key,) = keys

        def one(items: list[Any], root: dict[str, Any]) -> list[Any]:
            out: list[Any] = []
            for it in items:
                if it.__class__ is dict:
                    v = it.get(key)
                    if v is not None:
                        if v.__class__ is list:
                            out.extend(v)
                        else:
                            out.append(v)
            return out

        return one

    def chain(items: list[Any], root: dict[str, Any]) -> list[Any]:
        for key in keys:
            out: list[Any] = []
            for it in items:
                if it.__class__ is dict:
                    v = it.get(key)
                    if v is not None:
                        if v.__class__ is list:
                            out.extend(v)
                        else:
                            out.append(v)
            if not out:
                return out
            items = out
        return items

    return chain


def _identity(items: list[Any], root: dict[str, Any]) -> list[Any]:
    return items


def _compose(first: Fn, then: Fn) -> Fn:
    if first is _identity:
        return then
    if then is _identity:
        return first
    first_keys = getattr(first, "member_keys", None)
    then_keys = getattr(then, "member_keys", None)
    if first_keys is not None and then_keys is not None:
        return _member_fn(first_keys + then_keys)

    def composed(items: list[Any], root: dict[str, Any]) -> list[Any]:
        mid = first(items, root)
        return then(mid, root) if mid else mid

    composed.first_key = first_key(first)  # type: ignore[attr-defined]
    return composed


def first_key(fn: Fn) -> str | None:
    """The element name a compiled branch reads first from its input, when it starts with a path
    step: a branch with first key `k` selects nothing from an element that has no `k`."""
    keys = getattr(fn, "member_keys", None)
    if keys:
        return str(keys[0])
    return getattr(fn, "first_key", None)


def _member_fn(keys: tuple[str, ...]) -> Fn:
    fn = _members(keys)
    fn.member_keys = keys  # type: ignore[attr-defined]
    return fn


def _truth(collection: list[Any]) -> bool | None:
    """FHIRPath singleton evaluation of a collection as a Boolean (None: empty / not a singleton)."""
    if len(collection) != 1:
        return None
    value = collection[0]
    return value if value.__class__ is bool else True


Branch = tuple[Fn, str]


def _run(branches: Sequence[Branch], items: list[Any], root: dict[str, Any]) -> list[Any]:
    if len(branches) == 1:
        return branches[0][0](items, root)
    out: list[Any] = []
    for fn, _t in branches:
        out.extend(fn(items, root))
    return out


def _constant(value: Any) -> Fn:
    result = [value]

    def const(items: list[Any], root: dict[str, Any]) -> list[Any]:
        return list(result)

    return const


# ---------------------------------------------------------------- compiler


class Compiler:
    """Compiles a syntax tree for a given focus type (the root resource type at the top)."""

    def __init__(self, root_type: str, model: TypeModel) -> None:
        self.root_type = root_type
        self.model = model

    def compile(self, node: Node, focus: str) -> list[Branch]:
        """Branches evaluating `node` on a collection of elements of type `focus`."""
        match node:
            case Literal(value=value):
                kind = {bool: "boolean", str: "string", int: "integer", float: "decimal"}[type(value)]
                return [(_constant(value), kind)]
            case EmptySet():
                return []
            case Var(name="$this"):
                return [(_identity, focus)]
            case Var(name="resource" | "rootResource" | "context"):
                return [(lambda items, root: [root], self.root_type)]
            case Var(name="ucum"):
                return [(_constant("http://unitsofmeasure.org"), "string")]
            case Member(base=None, name=name):
                return self.member(name, focus, at_root=True)
            case Member(base=base, name=name) if base is not None:
                return [
                    (_compose(fn, nfn), nt)
                    for fn, t in self.compile(base, focus)
                    for nfn, nt in self.member(name, t)
                ]
            case Call(base=base, name=name, args=args):
                bases: list[Branch] = [(_identity, focus)] if base is None else self.compile(base, focus)
                return self.call(name, args, bases)
            case Index(base=base, index=Literal(value=int() as n)):
                bases = self.compile(base, focus)
                return self.whole(bases, lambda c: c[n : n + 1], bases[0][1] if len(bases) == 1 else None)
            case TypeOp(op="as", operand=operand, type_name=t):
                return self.type_filter(self.compile(operand, focus), t)
            case TypeOp(op="is", operand=operand, type_name=t):
                return self.type_test(self.compile(operand, focus), t)
            case Binary(op="|", left=left, right=right):
                return self.compile(left, focus) + self.compile(right, focus)
            case Binary(op="=" | "!=" as op, left=left, right=right):
                return self.equality(op, self.compile(left, focus), self.compile(right, focus))
            case Binary(op="and" | "or" as op, left=left, right=right):
                return self.logic(op, self.compile(left, focus), self.compile(right, focus))
        raise Unsupported(render(node))

    def member(self, name: str, focus: str, at_root: bool = False) -> list[Branch]:
        if focus in (UNKNOWN, RESOLVED, "Resource", "DomainResource"):
            raise Unsupported(f"navigation on {focus}")
        elements = self.model.types.get(focus)
        if at_root and name[:1].isupper() and self.model.is_type_name(name):
            # `Observation.code`: the leading type name selects the focus when it is of that type
            return [(_identity, focus)] if self.model.is_subtype(focus, name) else []
        if elements is None:
            return []  # a primitive: no child elements (its `_x` extensions are not navigated)
        declared = elements.get(name)
        if declared is None:
            raise Unsupported(f"{focus} has no element {name!r}")
        if isinstance(declared, list):
            return [(_member_fn((name + t[0].upper() + t[1:],)), t) for t in declared]
        return [(_member_fn((name,)), declared)]

    def whole(
        self, bases: list[Branch], op: Callable[[list[Any]], list[Any]], kind: str | None
    ) -> list[Branch]:
        """A function of the whole input collection (all branches together)."""
        if kind is None:
            raise Unsupported("indexing a union of types")
        branches = tuple(bases)

        def fn(items: list[Any], root: dict[str, Any]) -> list[Any]:
            return op(_run(branches, items, root))

        return [(fn, kind)]

    def call(self, name: str, args: tuple[Node, ...], bases: list[Branch]) -> list[Branch]:
        branches = tuple(bases)
        if name == "where" and len(args) == 1:
            return [(_compose(fn, self.where(args[0], t)), t) for fn, t in bases]
        if (
            name in ("as", "ofType")
            and len(args) == 1
            and isinstance(args[0], Member)
            and args[0].base is None
        ):
            return self.type_filter(bases, args[0].name)
        if name == "is" and len(args) == 1 and isinstance(args[0], Member) and args[0].base is None:
            return self.type_test(bases, args[0].name)
        if name == "resolve" and not args:
            return [(_compose(fn, _resolve), RESOLVED) for fn, t in bases if t in ("Reference", UNKNOWN)]
        if (
            name == "extension"
            and len(args) == 1
            and isinstance(args[0], Literal)
            and isinstance(args[0].value, str)
        ):
            url = args[0].value
            return [
                (_compose(_compose(fn, efn), _extension_url(url)), et)
                for fn, t in bases
                for efn, et in self.member("extension", t)
            ]
        if not args and name in ("exists", "empty", "not", "first", "hasValue", "count"):
            if name == "first":
                return (
                    self.whole(bases, lambda c: c[:1], bases[0][1] if len(bases) == 1 else None)
                    if bases
                    else []
                )
            tests: dict[str, Callable[[list[Any]], list[Any]]] = {
                "exists": lambda c: [bool(c)],
                "hasValue": lambda c: [len(c) == 1 and c[0].__class__ is not dict],
                "empty": lambda c: [not c],
                "count": lambda c: [len(c)],
                "not": lambda c: [] if (v := _truth(c)) is None else [not v],
            }
            test = tests[name]

            def whole(items: list[Any], root: dict[str, Any]) -> list[Any]:
                return test(_run(branches, items, root))

            return [(whole, "integer" if name == "count" else "boolean")]
        raise Unsupported(f"function {name}")

    def where(self, predicate: Node, focus: str) -> Fn:
        branches = tuple(self.compile(predicate, focus))

        def where(items: list[Any], root: dict[str, Any]) -> list[Any]:
            return [it for it in items if _truth(_run(branches, [it], root)) is True]

        return where

    def type_filter(self, bases: list[Branch], type_name: str) -> list[Branch]:
        target = _type_name(type_name)
        out: list[Branch] = []
        for fn, t in bases:
            if t == RESOLVED:
                out.append((_compose(fn, _resolved_is(target, keep=True)), RESOLVED))
            elif t == UNKNOWN:
                raise Unsupported("type test on an untyped collection")
            elif self.model.is_subtype(t, target):
                out.append((fn, t))
        return out

    def type_test(self, bases: list[Branch], type_name: str) -> list[Branch]:
        target = _type_name(type_name)
        if any(t == UNKNOWN for _fn, t in bases):
            raise Unsupported("type test on an untyped collection")
        tests = tuple(
            (
                fn,
                (_resolved_is(target, keep=False) if t == RESOLVED else None),
                self.model.is_subtype(t, target),
            )
            for fn, t in bases
        )

        def is_(items: list[Any], root: dict[str, Any]) -> list[Any]:
            found: list[Any] = []
            for fn, runtime, static in tests:
                for v in fn(items, root):
                    found.append(runtime([v], root)[0] if runtime is not None else static)
            return found if len(found) == 1 else []

        return [(is_, "boolean")]

    def equality(self, op: str, left: list[Branch], right: list[Branch]) -> list[Branch]:
        lb, rb = tuple(left), tuple(right)
        negate = op == "!="

        def eq(items: list[Any], root: dict[str, Any]) -> list[Any]:
            lv = _run(lb, items, root)
            if not lv:
                return []
            rv = _run(rb, items, root)
            if not rv:
                return []
            same = len(lv) == len(rv) and all(
                a == b and (a.__class__ is bool) == (b.__class__ is bool) for a, b in zip(lv, rv, strict=True)
            )
            return [same != negate]

        return [(eq, "boolean")]

    def logic(self, op: str, left: list[Branch], right: list[Branch]) -> list[Branch]:
        lb, rb = tuple(left), tuple(right)
        short = op == "or"  # the value that decides the result alone

        def logic(items: list[Any], root: dict[str, Any]) -> list[Any]:
            lv = _truth(_run(lb, items, root))
            if lv is short:
                return [short]
            rv = _truth(_run(rb, items, root))
            if rv is short:
                return [short]
            if lv is None or rv is None:
                return []
            return [not short]

        return [(logic, "boolean")]


def _resolve(items: list[Any], root: dict[str, Any]) -> list[Any]:
    return [t for it in items if (t := reference_type(it)) is not None]


def _resolved_is(target: str, keep: bool) -> Fn:
    model = type_model()

    def test(items: list[Any], root: dict[str, Any]) -> list[Any]:
        if keep:
            return [t for t in items if model.is_subtype(t, target)]
        return [model.is_subtype(t, target) for t in items]

    return test


def _extension_url(url: str) -> Fn:
    def by_url(items: list[Any], root: dict[str, Any]) -> list[Any]:
        return [e for e in items if e.__class__ is dict and e.get("url") == url]

    return by_url


# ---------------------------------------------------------------- extractors


class Extractor:
    """One compiled expression: `extractor(resource)` -> the elements it selects."""

    __slots__ = ("_fallback", "branches", "expression", "focus_type", "root_type")

    def __init__(self, expression: str, root_type: str, focus_type: str | None = None) -> None:
        self.expression = expression
        self.root_type = root_type
        self.focus_type = focus_type or root_type
        self._fallback: Callable[..., list[Any]] | None = None
        try:
            compiled = Compiler(root_type, type_model()).compile(parse(expression), self.focus_type)
            self.branches: tuple[Branch, ...] | None = tuple(compiled)
        except (Unsupported, ValueError):
            self.branches = None

    @property
    def compiled(self) -> bool:
        """False when the expression is evaluated by fhirpathpy."""
        return self.branches is not None

    def typed_on(self, focus: Any, root: dict[str, Any]) -> Iterator[tuple[list[Any], str]]:
        """(elements, FHIR type) per branch, evaluating on one focus element; empty lists skipped."""
        if self.branches is None:
            values = self._evaluate(focus, root)
            if values:
                yield values, UNKNOWN
            return
        items = [focus]
        for fn, kind in self.branches:
            values = fn(items, root)
            if values:
                yield values, kind

    def typed(self, resource: dict[str, Any]) -> list[tuple[Any, str]]:
        """Every selected element with its FHIR type (`"*"` when evaluated by fhirpathpy)."""
        return [
            (v, kind) for values, kind in self.typed_on(resource, resource) for v in values if v is not None
        ]

    def __call__(self, resource: dict[str, Any]) -> list[Any]:
        return [v for v, _kind in self.typed(resource)]

    def _evaluate(self, focus: Any, root: dict[str, Any]) -> list[Any]:
        if self._fallback is None:
            import fhirpathpy
            from fhirpathpy.models import models

            compiled = fhirpathpy.compile(self.expression, models["r4"])
            self._fallback = compiled
        return [_plain(v) for v in self._fallback(focus, {"resource": root, "rootResource": root})]


def _plain(value: Any) -> Any:
    """fhirpathpy's date/time/quantity objects back to their JSON form."""
    if value is None or isinstance(value, str | bool | int | float | dict | list):
        return value
    return str(value)


@functools.cache
def compile_expression(expression: str, root_type: str, focus_type: str | None = None) -> Extractor:
    """The extractor of `expression` for resources of `root_type`, compiled once.

    `focus_type` (default: the root type) is the type of the element the expression starts from;
    composite parameter components start from the element the composite expression selected.
    """
    return Extractor(expression, root_type, focus_type)
