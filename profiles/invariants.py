"""Invariants: ElementDefinition.constraint FHIRPath expressions, compiled once (https://hl7.org/fhir/R4/conformance-rules.html#constraints).

Each expression is parsed once (fhir_server/fhirpath/syntax.py) and split at its top-level `and` /
`or` / `implies` into operands combined with FHIRPath's three-valued logic, so a cheap operand
(`value.empty() or ...`) decides most evaluations. Each operand runs, in order of cost:
1. when none of the element names it reads from its focus is present, its result on an empty
   element, computed once and cached (e.g. `contained.contained.empty()` without `contained`);
2. the project's FHIRPath compiler (`fhir_server.fhirpath.compiler`), when it handles the operand;
3. fhirpathpy, parsed once, with its R4 model.
An expression or operand that reads nothing but its focus's members has its results remembered by
the JSON of those members (operand_results.py).
A few universal invariants are checked natively by the walk (NATIVE), and the hot ones of every
resource and Reference/Period have native evaluations of their exact R4 text (`_NATIVE_EXPRESSIONS`). An invariant fails only when it
evaluates to `false`; one the engines cannot evaluate is a warning, never an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from fhir_server.fhirpath.compiler import compile_expression, type_model
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

from . import operand_results, valid_subtrees

# ele-1 (a value or children): the walk refuses empty objects and arrays, and the primitive
# regexes refuse empty strings; ext-1 (extension or value[x], not both): the walk checks Extension;
# txt-1 (narrative xhtml): fhir_server.narrative; txt-2 (non-whitespace narrative): not enforced,
# HL7's own examples break it (see fhir_server/narrative.py).
NATIVE = frozenset({"ele-1", "ext-1", "txt-1", "txt-2"})

# Functions whose result on an empty input collection does not depend on their arguments.
_ARG_FREE_ON_EMPTY = frozenset(
    {
        "where", "select", "all", "exists", "empty", "not", "count", "first", "last", "tail", "skip",
        "take", "isDistinct", "distinct", "hasValue", "matches", "startsWith", "endsWith", "contains",
        "length", "substring", "toInteger", "toString", "ofType", "as", "is", "trace", "intersect",
        "subsetOf", "single", "children", "descendants", "lower", "upper", "replaceMatches", "replace",
        "allTrue", "anyTrue", "allFalse", "anyFalse", "exclude", "toChars", "split", "join", "extension",
    }
)  # fmt: skip


def _has_value(items: list[Any]) -> list[bool]:
    return [len(items) == 1 and items[0] is not None and not isinstance(items[0], (dict, list))]


_FUNCTIONS = {
    "hasValue": {"fn": _has_value, "arity": {0: []}},
    "htmlChecks": {"fn": lambda items: [True], "arity": {0: []}},  # txt-1 is native
    "resolve": {"fn": lambda items: [], "arity": {0: []}},  # no reads during validation
}
_OPTIONS = {"userInvocationTable": _FUNCTIONS, "traceFn": lambda *_: None, "returnRawData": True}

_ERROR = object()  # an operand no engine could evaluate


def _deps(node: Node) -> frozenset[str] | None:
    """Element names an expression reads from its focus; None when it may read anything else
    (`$this`, `%resource`, a type name, a function of the focus itself)."""
    match node:
        case Literal() | EmptySet():
            return frozenset()
        case Var(name="ucum"):
            return frozenset()
        case Var():
            return None
        case Member(base=None, name=name):
            return None if name[:1].isupper() else frozenset({name})
        case Member(base=base) if base is not None:
            return _deps(base)
        case Call(base=None):
            return None
        case Call(base=base, name=name, args=args) if base is not None:
            found = _deps(base)
            if name in _ARG_FREE_ON_EMPTY or found is None:
                return found
            for arg in args:
                more = _deps(arg)
                if more is None:
                    return None
                found |= more
            return found
        case Index(base=base, index=index):
            a, b = _deps(base), _deps(index)
            return None if a is None or b is None else a | b
        case TypeOp(operand=operand):
            return _deps(operand)
        case Binary(left=left, right=right):
            a, b = _deps(left), _deps(right)
            return None if a is None or b is None else a | b
    return None


@cache
def _model_types() -> frozenset[str]:
    """Types and backbone paths the project's compiler knows (it reads nothing of other foci)."""
    model = type_model()
    return frozenset(model.types) | frozenset(model.parents)


@cache
def _fhirpathpy(expression: str) -> Callable[..., Any] | None:
    try:
        return fhirpathpy.compile(expression, models["r4"], _OPTIONS)
    except Exception:
        return None


def _truth(values: Any) -> Any:
    """FHIRPath singleton evaluation as a Boolean: True, False, None (empty) or _ERROR."""
    if values is _ERROR:
        return _ERROR
    if len(values) == 0:
        return None
    if len(values) > 1:
        return _ERROR
    return values[0] if values[0].__class__ is bool else True


@dataclass(eq=False)
class _Operand:
    """One operand of the top-level logic: an expression evaluated with the cheapest engine."""

    expression: str
    deps: frozenset[str] | None
    typed: bool = False  # uses is/as/ofType: the project's compiler decides those statically, wrong on a
    # Resource-typed element such as Bundle.entry.resource (its type is only known at run time)
    empty: dict[tuple[str, str], Any] = field(default_factory=dict)
    # per shape (an element's JSON names, the same few recur): whether the operand reads one of
    # them, and the ones its result is a function of (None: the result is not remembered)
    reads: dict[tuple[str, ...], tuple[bool, tuple[str, ...] | None]] = field(default_factory=dict)
    pure: frozenset[str] | None = None  # operand_results.pure_reads
    results: operand_results.Results = field(default_factory=operand_results.Results)

    def evaluate(self, item: Any, type_path: str, resource: Any, root: Any) -> Any:
        if self.deps is not None and item.__class__ is dict:
            names = tuple(item)
            shape = self.reads.get(names)
            if shape is None:
                reads = any(
                    (key[1:] if key[:1] == "_" else key).startswith(d) for key in names for d in self.deps
                )
                members = operand_results.members_read(names, self.pure) if self.pure is not None else None
                if len(self.reads) >= 1024:
                    self.reads.clear()
                shape = self.reads[names] = (reads, members)
            reads, members = shape
            rtype = resource.get("resourceType", "") if isinstance(resource, dict) else ""
            if not reads:
                cached = self.empty.get((rtype, type_path), self)
                if cached is self:
                    cached = self.empty[(rtype, type_path)] = self._run({}, type_path, resource, root)
                return cached
            if members is not None:
                key = operand_results.key_of(item, members, rtype, type_path)
                if key is not None:
                    known = self.results.get(key, self)
                    if known is self:
                        known = self._run(item, type_path, resource, root)
                        if known is not _ERROR:
                            self.results.put(key, known)
                    return known
        return self._run(item, type_path, resource, root)

    def _run(self, item: Any, type_path: str, resource: Any, root: Any) -> Any:
        rtype = resource.get("resourceType") if isinstance(resource, dict) else None
        if rtype and type_path and not self.typed and type_path in _model_types():
            try:
                extractor = compile_expression(self.expression, rtype, type_path)
                if extractor.compiled:
                    return _truth([v for vs, _t in extractor.typed_on(item, resource) for v in vs])
            except Exception:
                pass
        run = _fhirpathpy(self.expression)
        if run is None:
            return _ERROR
        try:
            node = ResourceNode.create_node(item, type_path or None)
            return _truth(run(node, {"resource": resource, "rootResource": root}))
        except Exception:
            return _ERROR


Plan = tuple[str, Any, Any] | _Operand


_CALL_QUOTES = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`\(")


# FHIRPath System type names as the FHIR primitive types they stand for in R4 invariants
# (`answer is Boolean` holds for an answerBoolean; fhirpathpy only matches `boolean`).
_SYSTEM_TYPES = {"Boolean": "boolean", "Integer": "integer", "Decimal": "decimal", "Date": "date",
                 "DateTime": "dateTime", "Time": "time", "String": "string"}  # fmt: skip


def _fhir_types(node: Any) -> Any:
    """The syntax tree with System type names in is/as/ofType written as FHIR primitive types."""
    if isinstance(node, TypeOp):
        return replace(
            node,
            operand=_fhir_types(node.operand),
            type_name=_SYSTEM_TYPES.get(node.type_name, node.type_name),
        )
    if isinstance(node, Call):
        args = node.args
        if (
            node.name in ("is", "as", "ofType")
            and len(args) == 1
            and isinstance(args[0], Member)
            and args[0].base is None
        ):
            args = (replace(args[0], name=_SYSTEM_TYPES.get(args[0].name, args[0].name)),)
        else:
            args = tuple(_fhir_types(a) for a in args)
        return replace(node, base=_fhir_types(node.base) if node.base is not None else None, args=args)
    if isinstance(node, Member) and node.base is not None:
        return replace(node, base=_fhir_types(node.base))
    if isinstance(node, Index):
        return replace(node, base=_fhir_types(node.base), index=_fhir_types(node.index))
    if isinstance(node, Binary):
        return replace(node, left=_fhir_types(node.left), right=_fhir_types(node.right))
    return node


def _plan(node: Node) -> Plan:
    if isinstance(node, Binary) and node.op in ("and", "or", "implies"):
        return (node.op, _plan(node.left), _plan(node.right))
    node = _fhir_types(node)
    text = _CALL_QUOTES.sub(r"\1(", render(node))  # fhirpathpy takes `name` quoting on members only
    return _Operand(text, _deps(node), typed=_typed(node), pure=operand_results.pure_reads(node))


def _typed(node: Any) -> bool:
    """Whether the expression tests or casts a type (is, as, ofType) anywhere."""
    if isinstance(node, TypeOp) or (isinstance(node, Call) and node.name in ("is", "as", "ofType")):
        return True
    children: list[Any] = []
    if isinstance(node, (Member, Call)) and node.base is not None:
        children.append(node.base)
    if isinstance(node, Call):
        children.extend(node.args)
    if isinstance(node, Index):
        children += [node.base, node.index]
    if isinstance(node, Binary):
        children += [node.left, node.right]
    return any(_typed(c) for c in children)


def _run_plan(plan: Plan, item: Any, type_path: str, resource: Any, root: Any) -> Any:
    if isinstance(plan, _Operand):
        return plan.evaluate(item, type_path, resource, root)
    op, left, right = plan
    a = _run_plan(left, item, type_path, resource, root)
    if op == "or" and a is True:
        return True
    if op == "and" and a is False:
        return False
    if op == "implies" and a is False:
        return True
    b = _run_plan(right, item, type_path, resource, root)
    if a is _ERROR or b is _ERROR:
        return True if (op != "and" and b is True) else (False if op == "and" and b is False else _ERROR)
    if op == "or":
        return True if b is True else (False if a is False and b is False else None)
    if op == "and":
        return False if b is False else (True if a is True and b is True else None)
    # implies: a is True or None here
    if b is True:
        return True
    return b if a is True else None


def _contained(item: Any) -> list[dict[str, Any]]:
    found = item.get("contained") if item.__class__ is dict else None
    return [c for c in found if c.__class__ is dict] if isinstance(found, list) else []


def _ref_1(item: Any, root: Any) -> bool | None:
    ref = item.get("reference") if item.__class__ is dict else None
    if not (isinstance(ref, str) and ref.startswith("#")):
        return True
    return ref[1:] in {c.get("id") for c in _contained(root) if isinstance(c.get("id"), str)}


def _per_1(item: Any, root: Any) -> bool | None:
    if item.__class__ is not dict:
        return None
    start, end = item.get("start"), item.get("end")
    if not isinstance(start, str) or not isinstance(end, str):
        return True
    # same precision and, with a time, the same zone: the text order is the time order
    if len(start) == len(end) and (len(start) <= 10 or (len(start) >= 20 and start[-6:] == end[-6:])):
        return start <= end
    if len(start) == len(end) and start.endswith("Z") and end.endswith("Z"):
        return start <= end
    return None  # different precisions or zones: FHIRPath's comparison (fhirpathpy)


def _strings_from_hash(node: Any, out: set[str]) -> set[str]:
    """Every string value starting with '#' below node (local references, canonicals, uris)."""
    if node.__class__ is dict:
        for v in node.values():
            if v.__class__ is str:
                if v[:1] == "#":
                    out.add(v)
            elif v.__class__ in (dict, list):
                _strings_from_hash(v, out)
    elif node.__class__ is list:
        for v in node:
            if v.__class__ is str:
                if v[:1] == "#":
                    out.add(v)
            elif v.__class__ in (dict, list):
                _strings_from_hash(v, out)
    return out


def _dom_3(item: Any, root: Any) -> bool | None:
    contained = _contained(item)
    if not contained:
        return True
    local = _strings_from_hash(item, set())  # %resource.descendants(): references, canonicals, uris
    for c in contained:
        if f"#{c.get('id')}" in local:
            continue
        if "#" in _strings_from_hash(c, set()):  # it refers to its container
            continue
        return False
    return True


def _vs_1(item: Any, root: Any) -> bool | None:
    """vs-1 on a vital sign's effective[x]: a dateTime is precise to the day. A Period is not a
    dateTime (`as` gives nothing: the invariant holds); an instant, the other string a profile may
    allow there, is always longer than 8 characters."""
    return len(item) >= 8 if item.__class__ is str else True


def _meta_empty(*names: str) -> Callable[[Any, Any], bool | None]:
    def check(item: Any, root: Any) -> bool | None:
        for c in _contained(item):
            meta = c.get("meta")
            if meta.__class__ is dict and any(n in meta for n in names):
                return False
        return True

    return check


# Native evaluations of hot invariants, each for its exact R4 expression (a profile that reuses a
# key with another expression is evaluated as written). They answer True/False, or None: evaluate.
# dom-3 treats any string value '#id' as a reference to the contained resource id (the expression
# reads reference, canonical, uri and url values; other strings rarely start with '#').
_NATIVE_EXPRESSIONS: dict[tuple[str, str], Callable[[Any, Any], bool | None]] = {
    ("ref-1", "reference.startsWith('#').not() or (reference.substring(1).trace('url') in %rootResource.contained.id.trace('ids'))"): _ref_1,
    ("per-1", "start.hasValue().not() or end.hasValue().not() or (start <= end)"): _per_1,
    ("dom-2", "contained.contained.empty()"): lambda item, root: all("contained" not in c for c in _contained(item)),
    ("dom-3", "contained.where((('#'+id in (%resource.descendants().reference | %resource.descendants().as(canonical) | %resource.descendants().as(uri) | %resource.descendants().as(url))) or descendants().where(reference = '#').exists() or descendants().where(as(canonical) = '#').exists() or descendants().where(as(canonical) = '#').exists()).not()).trace('unmatched', id).empty()"): _dom_3,
    ("dom-4", "contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()"): _meta_empty("versionId", "lastUpdated"),
    ("dom-5", "contained.meta.security.empty()"): _meta_empty("security"),
    ("vs-1", "($this as dateTime).toString().length() >= 8"): _vs_1,
}  # fmt: skip


@dataclass(frozen=True, eq=False)
class Invariant:
    """One constraint of an element: key, severity, human text and its evaluation plan."""

    key: str
    severity: str  # "error" | "warning"
    human: str
    expression: str
    plan: Plan | None
    native: Callable[[Any, Any], bool | None] | None = None
    # results by the JSON the expression reads, when that is all it reads (operand_results.py)
    results: operand_results.Results | None = None
    context: bool = True  # whether it may read outside its focus (valid_subtrees.reads_context)

    def holds(self, item: Any, type_path: str, resource: Any, root: Any) -> bool | None:
        """True/False, or None when the expression could not be evaluated."""
        if self.native is not None:
            answer = self.native(item, root if root is not None else resource)
            if answer is not None:
                return answer
        if self.plan is None:
            return None
        key = None
        if self.results is not None and item.__class__ is dict:
            rtype = resource.get("resourceType", "") if isinstance(resource, dict) else ""
            key = self.results.key(item, rtype, type_path)
            if key is not None:
                known = self.results.get(key, None)
                if known is not None:
                    return known
        result = _run_plan(self.plan, item, type_path, resource, root)
        if result is _ERROR:
            return None
        answer = result is not False
        if key is not None and self.results is not None:
            self.results.put(key, answer)
        return answer


@cache
def _results(expression: str) -> operand_results.Results | None:
    """The table of an expression's results when it reads nothing but members of its focus."""
    try:
        reads = operand_results.pure_reads(parse(expression))
    except Exception:
        return None
    return operand_results.Results(reads) if reads is not None else None


@cache
def _compiled_plan(expression: str) -> Plan | None:
    try:
        return _plan(parse(expression))
    except Exception:
        return _Operand(expression, None) if _fhirpathpy(expression) is not None else None


def compile_constraints(
    constraints: list[dict[str, Any]], skip_source: Callable[[str], bool] = lambda _: False
) -> tuple[Invariant, ...]:
    """The element's constraints we evaluate with FHIRPath (not the NATIVE ones, nor those whose
    `source` `skip_source` rejects), each compiled once."""
    out = []
    for c in constraints:
        key, expression = c.get("key", ""), c.get("expression")
        if key in NATIVE or not isinstance(expression, str) or skip_source(c.get("source", "")):
            continue
        plan = _compiled_plan(expression)
        native = _NATIVE_EXPRESSIONS.get((key, expression))
        severity, human = c.get("severity", "error"), c.get("human", key)
        context = valid_subtrees.reads_context(expression)
        out.append(Invariant(key, severity, human, expression, plan, native, _results(expression), context))
    return tuple(out)
