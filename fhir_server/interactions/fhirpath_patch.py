"""FHIRPath Patch: a Parameters body of add / insert / delete / replace / move operations (https://hl7.org/fhir/R4/fhirpatch.html).

Each `operation` parameter has parts `type`, `path` (FHIRPath), and by type `name`, `value`
(a value[x], or parts for a complex value), `index`, `source`, `destination`. The operations are
applied in order to a copy of the resource; the result is validated like any write.

Paths are evaluated to *locations* (the JSON object, member name and list index holding a node),
so that the node can be changed in place. Supported: member navigation (choice elements by their
FHIRPath name: `Observation.value` finds `valueQuantity`), `[n]`, `first()`, `last()`, `single()`,
`where(criteria)` (the criteria evaluated on each node by fhirpathpy) and `ofType(T)` on choices;
anything else is a 422 naming the path. A primitive's `_name` twin (its id and extensions)
follows the primitive when it is deleted or moved.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import fhirpathpy
from fhirpathpy.models import models

from profiles.snapshot import Element, TypeRef, for_type

from ..errors import Invalid, Unprocessable
from ..fhirpath import syntax

OPERATION_TYPES = ("add", "insert", "delete", "replace", "move")
MAX_OPERATIONS = 1000


@dataclass(frozen=True)
class Operation:
    """One patch operation, checked for shape."""

    type: str
    path: str
    name: str | None
    value: Any  # JSON value, or _NO_VALUE
    value_type: str | None  # the value[x] type suffix, e.g. "Quantity" (None: given as parts)
    index: int | None
    source: int | None
    destination: int | None
    where: str


_NO_VALUE = object()


def is_fhirpath_patch(body: Any) -> bool:
    """A Parameters resource (FHIRPath Patch) rather than a JSON Patch array."""
    return isinstance(body, dict) and body.get("resourceType") == "Parameters"


def operations(body: dict[str, Any]) -> list[Operation]:
    """The operations of a FHIRPath Patch Parameters body (400 naming a malformed one)."""
    params = body.get("parameter")
    if not isinstance(params, list) or not params:
        raise Invalid("A FHIRPath Patch needs at least one 'operation' parameter", "Parameters.parameter")
    if len(params) > MAX_OPERATIONS:
        raise Invalid(f"A FHIRPath Patch has at most {MAX_OPERATIONS} operations", "Parameters.parameter")
    return [_operation(p, f"Parameters.parameter[{i}]") for i, p in enumerate(params)]


def _operation(param: Any, where: str) -> Operation:
    if not isinstance(param, dict) or param.get("name") != "operation":
        raise Invalid("Every parameter of a FHIRPath Patch must be named 'operation'", f"{where}.name")
    parts = param.get("part")
    if not isinstance(parts, list):
        raise Invalid("An operation needs its parts (type, path, ...)", f"{where}.part")
    found: dict[str, dict[str, Any]] = {}
    for i, part in enumerate(parts):
        name = part.get("name") if isinstance(part, dict) else None
        if not isinstance(name, str) or name not in (
            "type",
            "path",
            "name",
            "value",
            "index",
            "source",
            "destination",
        ):
            raise Invalid(f"Unknown part {name!r} of a patch operation", f"{where}.part[{i}]")
        if name in found:
            raise Invalid(f"The part '{name}' is given twice", f"{where}.part[{i}]")
        found[name] = part
    kind = _primitive(found, "type", str, where)
    if kind not in OPERATION_TYPES:
        raise Invalid(
            f"Unknown patch operation type {kind!r}; expected one of {', '.join(OPERATION_TYPES)}", where
        )
    path = _primitive(found, "path", str, where)
    if path is None:
        raise Invalid("A patch operation needs a 'path'", f"{where}.part")
    needs = {
        "add": ("name", "value"),
        "insert": ("value", "index"),
        "delete": (),
        "replace": ("value",),
        "move": ("source", "destination"),
    }[kind]
    for need in needs:
        if need not in found:
            raise Invalid(f"A '{kind}' operation needs a '{need}' part", f"{where}.part")
    value, value_type = _NO_VALUE, None
    if "value" in found:
        value, value_type = _value(found["value"], f"{where}.part.value")
    return Operation(
        kind,
        path,
        _primitive(found, "name", str, where),
        value,
        value_type,
        _primitive(found, "index", int, where),
        _primitive(found, "source", int, where),
        _primitive(found, "destination", int, where),
        where,
    )


def _primitive(found: dict[str, dict[str, Any]], name: str, kind: type, where: str) -> Any:
    part = found.get(name)
    if part is None:
        return None
    values = [v for k, v in part.items() if k.startswith("value")]
    if len(values) != 1 or not isinstance(values[0], kind) or isinstance(values[0], bool):
        what = "an integer" if kind is int else "a string"
        raise Invalid(f"The part '{name}' must have one value that is {what}", f"{where}.part.{name}")
    if isinstance(values[0], int) and values[0] < 0:
        raise Invalid(f"The part '{name}' must not be negative", f"{where}.part.{name}")
    return values[0]


def _value(part: dict[str, Any], where: str) -> tuple[Any, str | None]:
    """The JSON of a `value` part: its value[x] (and type), or an object built from its parts."""
    keys = [k for k in part if k.startswith("value")]
    if (keys and "part" in part) or len(keys) > 1:
        raise Invalid("A value has one value[x] or parts, not both", where)
    if keys:
        return part[keys[0]], keys[0][len("value") :]
    parts = part.get("part")
    if not isinstance(parts, list) or not parts:
        raise Invalid("A value needs a value[x] or parts", where)
    built: dict[str, Any] = {}
    for i, sub in enumerate(parts):
        name = sub.get("name") if isinstance(sub, dict) else None
        if not isinstance(name, str) or not name:
            raise Invalid("Every part of a complex value needs a name", f"{where}.part[{i}]")
        inner, inner_type = _value(sub, f"{where}.part[{i}]")
        key = name.removesuffix("[x]")
        if inner_type is not None:
            inner = _Typed(inner, inner_type)  # a choice element named by its stem takes this type
        if key in built:
            existing = built[key]
            built[key] = [*existing, inner] if isinstance(existing, list) else [existing, inner]
        else:
            built[key] = inner
    return built, None


@dataclass(frozen=True)
class _Typed:
    """A part's value[x] with its type, until the definition says whether the name is a choice."""

    value: Any
    type: str


def _plain(value: Any) -> Any:
    """The JSON of a built value, choice stems left as named (no definition to resolve them)."""
    if isinstance(value, _Typed):
        return _plain(value.value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------- locations


@dataclass
class _Loc:
    """Where a node lives: `holder[key]`, or `holder[key][index]` for a list item."""

    holder: dict[str, Any]
    key: str
    index: int | None
    element: Element | None  # its definition, when known
    tref: TypeRef | None

    @property
    def value(self) -> Any:
        v = self.holder[self.key]
        return v if self.index is None else v[self.index]


def _members(e: Element | None, tref: TypeRef | None) -> dict[str, tuple[Element, TypeRef]]:
    """JSON name -> (element, type) of the children of a node of this definition."""
    if e is None:
        return {}
    if e.children and len(e.types) <= 1:
        return e.keys
    if e.content_ref is not None:
        path = e.content_ref.split("#", 1)[-1]
        definition = for_type(path.split(".", 1)[0])
        target = definition.by_path.get(path) if definition is not None else None
        return target.keys if target is not None else {}
    definition = for_type(tref.code) if tref is not None else None
    return definition.root.keys if definition is not None else {}


def _json_key(node: dict[str, Any], members: dict[str, tuple[Element, TypeRef]], name: str) -> str | None:
    """The JSON member of `node` that the FHIRPath name selects (choice elements by their stem)."""
    if name in node:
        return name
    for key in node:
        hit = members.get(key)
        if hit is not None and hit[0].choice and hit[0].name == name:
            return key
    return None


class _Evaluator:
    def __init__(self, root: dict[str, Any], res_type: str, path: str) -> None:
        definition = for_type(res_type)
        self.root_loc = _Loc({"": root}, "", None, definition.root if definition else None, None)
        self.res_type = res_type
        self.path = path

    def unsupported(self, what: str) -> Unprocessable:
        return Unprocessable(f"FHIRPath Patch path '{self.path}': {what} is not supported here", self.path)

    def locate(self, node: syntax.Node) -> list[_Loc]:
        if isinstance(node, syntax.Member):
            if node.base is None:
                if node.name == self.res_type:
                    return [self.root_loc]
                return self.member([self.root_loc], node.name)
            return self.member(self.locate(node.base), node.name)
        if isinstance(node, syntax.Index):
            if not isinstance(node.index, syntax.Literal) or not isinstance(node.index.value, int):
                raise self.unsupported("an index that is not a number")
            found = self.locate(node.base)
            n = node.index.value
            return [found[n]] if 0 <= n < len(found) else []
        if isinstance(node, syntax.Call) and node.base is not None:
            found = self.locate(node.base)
            return self.call(found, node)
        raise self.unsupported(f"'{syntax.render(node)}'")

    def member(self, found: list[_Loc], name: str) -> list[_Loc]:
        out: list[_Loc] = []
        for loc in found:
            node = loc.value
            if not isinstance(node, dict):
                continue
            members = _members(loc.element, loc.tref)
            key = _json_key(node, members, name)
            if key is None:
                continue
            element, tref = members.get(key, (None, None))
            value = node[key]
            if isinstance(value, list):
                out.extend(_Loc(node, key, i, element, tref) for i in range(len(value)))
            else:
                out.append(_Loc(node, key, None, element, tref))
        return out

    def call(self, found: list[_Loc], node: syntax.Call) -> list[_Loc]:
        if node.name in ("first", "last", "single") and not node.args:
            if node.name == "single" and len(found) > 1:
                raise Unprocessable(
                    f"'{self.path}' matches {len(found)} elements, single() needs one", self.path
                )
            return found[:1] if node.name != "last" else found[-1:]
        if node.name == "where" and len(node.args) == 1:
            test = _criteria(syntax.render(node.args[0]))
            if test is None:
                raise self.unsupported(f"the criteria '{syntax.render(node.args[0])}'")
            return [loc for loc in found if _true(test, loc.value)]
        if node.name == "ofType" and len(node.args) == 1 and isinstance(node.args[0], syntax.Member):
            wanted = node.args[0].name
            return [loc for loc in found if loc.tref is not None and loc.tref.code == wanted]
        raise self.unsupported(f"the function {node.name}()")


@cache
def _criteria(expression: str) -> Callable[..., Any] | None:
    try:
        return fhirpathpy.compile(expression, models["r4"])
    except Exception:
        return None


def _true(test: Callable[..., Any], value: Any) -> bool:
    try:
        return test(value) == [True]
    except Exception:
        return False


def _parse(path: str) -> syntax.Node:
    try:
        return syntax.parse(path)
    except (ValueError, IndexError, KeyError) as exc:
        raise Invalid(f"The path '{path}' is not valid FHIRPath: {exc}", path) from None


# ---------------------------------------------------------------- applying


def apply(resource: dict[str, Any], res_type: str, ops: list[Operation]) -> dict[str, Any]:
    """The resource with the operations applied in order (a changed copy; 422 when one cannot apply)."""
    result = copy.deepcopy(resource)
    for op in ops:
        _APPLY[op.type](result, res_type, op)
    return result


def _shaped(op: Operation, element: Element | None, tref: TypeRef | None) -> Any:
    """The value to store: a value given as parts is shaped by its definition (repeating elements
    become arrays, choice elements take their type's JSON name where the part named the stem)."""
    if op.value_type is not None or element is None:
        return _plain(copy.deepcopy(op.value))
    if tref is None and element.types:
        tref = element.types[0]
    return _shape(op.value, element, tref)


def _shape(value: Any, element: Element, tref: TypeRef | None) -> Any:
    if not isinstance(value, dict):
        return _plain(value)
    members = _members(element, tref)
    if not members:
        return _plain(value)
    out: dict[str, Any] = {}
    for key, inner in value.items():
        items = inner if isinstance(inner, list) else [inner]
        typed = next((i.type for i in items if isinstance(i, _Typed)), None)
        name = key
        if key not in members and typed is not None:
            name = key + typed  # a choice element named by its stem: value + Quantity
        hit = members.get(name)
        if hit is None:
            out[key] = _plain(inner)  # not an element here: validation names it
            continue
        child, child_type = hit
        shaped = [_shape(i.value if isinstance(i, _Typed) else i, child, child_type) for i in items]
        out[name] = shaped if child.array else (shaped[0] if len(shaped) == 1 else shaped)
    return out


def _one(found: list[_Loc], op: Operation) -> _Loc:
    if len(found) != 1:
        what = "nothing" if not found else f"{len(found)} elements"
        raise Unprocessable(
            f"The {op.type} path '{op.path}' matches {what}; it must match exactly one", op.path
        )
    return found[0]


def _add(resource: dict[str, Any], res_type: str, op: Operation) -> None:
    ev = _Evaluator(resource, res_type, op.path)
    target = _one(ev.locate(_parse(op.path)), op)
    node = target.value
    if not isinstance(node, dict):
        raise Unprocessable(f"'{op.path}' is a primitive value; add needs an element to add to", op.path)
    members = _members(target.element, target.tref)
    name = op.name or ""
    key = _new_key(members, name, op)
    element, tref = members.get(key, (None, None))
    if element is None and members:
        raise Unprocessable(f"'{name}' is not an element of '{op.path}'", f"{op.path}.{name}")
    value = _shaped(op, element, tref)
    if (element is not None and element.array) or isinstance(node.get(key), list):
        node.setdefault(key, []).append(value)
    elif key in node:
        raise Unprocessable(f"'{op.path}.{name}' already has a value; use replace", f"{op.path}.{name}")
    else:
        node[key] = value


def _new_key(members: dict[str, tuple[Element, TypeRef]], name: str, op: Operation) -> str:
    """The JSON name for a new `name` element (a choice element takes the value's type)."""
    if name in members or not members:
        return name
    if op.value_type:
        typed = name + op.value_type
        hit = members.get(typed)
        if hit is not None and hit[0].choice:
            return typed
    return name


def _collection(
    ev: _Evaluator, op: Operation
) -> tuple[dict[str, Any], str, tuple[Element, TypeRef] | tuple[None, None]]:
    """The object and member of the list an insert or move names (`path` is `<parent>.<name>`)."""
    node = _parse(op.path)
    if not isinstance(node, syntax.Member) or node.base is None:
        raise Unprocessable(f"'{op.path}' must name a list element, as <path>.<name>", op.path)
    parent = ev.locate(node.base)
    if len(parent) != 1 or not isinstance(parent[0].value, dict):
        raise Unprocessable(f"The parent of '{op.path}' must be exactly one element", op.path)
    holder = parent[0].value
    members = _members(parent[0].element, parent[0].tref)
    key = _json_key(holder, members, node.name) or node.name
    hit = members.get(key, (None, None))
    if hit[0] is not None and not hit[0].array:
        raise Unprocessable(f"'{op.path}' is not a repeating element", op.path)
    if key in holder and not isinstance(holder[key], list):
        raise Unprocessable(f"'{op.path}' is not a list", op.path)
    return holder, key, hit


def _insert(resource: dict[str, Any], res_type: str, op: Operation) -> None:
    holder, key, (element, tref) = _collection(_Evaluator(resource, res_type, op.path), op)
    items = holder.setdefault(key, [])
    index = op.index if op.index is not None else 0
    if index > len(items):
        raise Unprocessable(f"Index {index} is beyond the {len(items)} items of '{op.path}'", op.path)
    items.insert(index, _shaped(op, element, tref))
    twin = holder.get("_" + key)
    if isinstance(twin, list):
        twin.insert(index, None)


def _move(resource: dict[str, Any], res_type: str, op: Operation) -> None:
    holder, key, _ = _collection(_Evaluator(resource, res_type, op.path), op)
    items = holder.get(key) or []
    source, destination = op.source or 0, op.destination or 0
    if source >= len(items) or destination >= len(items):
        raise Unprocessable(
            f"'{op.path}' has {len(items)} items: source and destination must be below that", op.path
        )
    items.insert(destination, items.pop(source))
    twin = holder.get("_" + key)
    if isinstance(twin, list) and len(twin) == len(items):
        twin.insert(destination, twin.pop(source))


def _delete(resource: dict[str, Any], res_type: str, op: Operation) -> None:
    found = _Evaluator(resource, res_type, op.path).locate(_parse(op.path))
    if not found:
        return  # "delete ... (if found)"
    loc = _one(found, op)
    if loc.key == "":
        raise Unprocessable("A patch cannot delete the resource itself", op.path)
    twin = loc.holder.get("_" + loc.key)
    if loc.index is None:
        del loc.holder[loc.key]
        loc.holder.pop("_" + loc.key, None)
        return
    items = loc.holder[loc.key]
    del items[loc.index]
    if isinstance(twin, list) and len(twin) > loc.index:
        del twin[loc.index]
    if not items:
        del loc.holder[loc.key]
        loc.holder.pop("_" + loc.key, None)


def _replace(resource: dict[str, Any], res_type: str, op: Operation) -> None:
    loc = _one(_Evaluator(resource, res_type, op.path).locate(_parse(op.path)), op)
    if loc.key == "":
        raise Unprocessable("A patch cannot replace the resource itself", op.path)
    value = _shaped(op, loc.element, loc.tref)
    if loc.index is not None:
        loc.holder[loc.key][loc.index] = value
        return
    key = loc.key
    if loc.element is not None and loc.element.choice and op.value_type:
        key = loc.element.name + op.value_type  # a choice may change type: valueString -> valueQuantity
    if key != loc.key:
        del loc.holder[loc.key]
        loc.holder.pop("_" + loc.key, None)
    loc.holder[key] = value


_APPLY: dict[str, Callable[[dict[str, Any], str, Operation], None]] = {
    "add": _add,
    "insert": _insert,
    "delete": _delete,
    "replace": _replace,
    "move": _move,
}
