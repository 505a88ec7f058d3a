"""Parse a FHIR search query string into frozen dataclasses (https://hl7.org/fhir/R4/search.html).

`parse(resource_type, [(name, value), ...], lenient=...)` resolves every parameter against the
search parameter registry: repeated parameters are ANDed, comma-separated values ORed; chains
(`subject:Patient.name=x`, any depth) and reverse chains (`_has:Observation:patient:code=x`,
nested) become nested criteria; the result parameters (`_sort`, `_count`, `_include`,
`_revinclude`, `_summary`, `_elements`, `_total`, `_type`, and the paging `_cursor`) are checked.
An unknown parameter or modifier is a 400 naming it, unless `lenient` (handling=lenient), when it
is left out and listed in `SearchQuery.ignored`. Malformed values are always a 400.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Protocol

from fhir_server.errors import Invalid
from fhir_server.instant import now_us as _now_us
from fhir_server.model import is_resource_type, resource_types
from fhir_server.search import cursor_signing
from fhir_server.search.parameters import joined_ids, row_ids
from fhir_server.search.types import REGISTRY
from fhir_server.search.types.base import Parsing
from fhir_server.search.types.composite import CompositeValue
from fhir_server.search.types.date import DateValue
from fhir_server.search.types.number import NumberValue
from fhir_server.search.types.quantity import QuantityValue
from fhir_server.search.types.reference import ReferenceValue
from fhir_server.search.types.string import StringValue
from fhir_server.search.types.token import OfTypeValue, TextValue, TokenValue, ValueSetValue
from fhir_server.search.types.uri import UriValue
from fhir_server.search.values import fail, split

DEFAULT_MAX_COUNT = 1000
MAX_INCLUDE_DEPTH = 4  # how many rounds `:iterate` includes run at most

# `_format` and `_pretty` belong to the HTTP layer (https://hl7.org/fhir/R4/http.html#parameters)
# and are passed over here; the result parameters are read by RESULT_PARAMETERS (below).
_TRANSPORT = frozenset({"_format", "_pretty"})


class SearchParamLike(Protocol):
    """What the registry's SearchParam offers (fhir_server/search/parameters.py)."""

    @property
    def code(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def targets(self) -> tuple[str, ...]: ...
    @property
    def components(self) -> tuple[Any, ...]: ...
    @property
    def param_id(self) -> int: ...


class Registry(Protocol):
    """The search parameter registry (the `fhir_server.search.parameters` module satisfies it)."""

    def get(self, resource_type: str, code: str) -> Any: ...
    def for_type(self, resource_type: str) -> Any: ...
    def param_id(self, resource_type: str, code: str) -> int: ...


@dataclass(frozen=True)
class MissingValue:
    """`:missing=true|false`."""

    missing: bool


Value = (
    StringValue
    | TokenValue
    | OfTypeValue
    | TextValue
    | ValueSetValue
    | ReferenceValue
    | DateValue
    | NumberValue
    | QuantityValue
    | UriValue
    | CompositeValue
    | MissingValue
)


@dataclass(frozen=True)
class Param:
    """A search parameter resolved for the resource types searched: one param_id per type."""

    code: str
    type: str  # a SearchParamType code, or "id" / "lastUpdated" for the resource-table parameters
    resource_types: tuple[str, ...]
    ids: tuple[int, ...]
    targets: tuple[str, ...] = ()
    components: tuple[str, ...] = ()  # component types of a composite
    # Per composite on the resource itself answered by its components' parameters' rows: their
    # param_ids in component order (search/parameters.py `joined_ids`).
    joined: tuple[tuple[int, ...], ...] = ()

    @property
    def on_resource_table(self) -> bool:
        """`_id` and `_lastUpdated` are answered from the resource table, not an index table."""
        return self.type in ("id", "lastUpdated")


@dataclass(frozen=True)
class Filter:
    """One parameter occurrence: its values are ORed."""

    name: str
    param: Param
    modifier: str | None
    values: tuple[Value, ...]
    # param_ids of the derived pseudo-parameter for :identifier (code:identifier) / :of-type (code:of-type)
    aux_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Chain:
    """`param[:Type].rest`: resources whose reference `param` points to a target matching `criterion`."""

    name: str
    param: Param
    target_types: tuple[str, ...]
    criterion: Criterion


@dataclass(frozen=True)
class Has:
    """`_has:Type:param:rest`: resources referenced through `param` by a `Type` matching `criterion`."""

    name: str
    source_type: str
    param: Param
    criterion: Criterion


Criterion = Filter | Chain | Has


@dataclass(frozen=True)
class SortKey:
    """One `_sort` key."""

    param: Param
    descending: bool


@dataclass(frozen=True)
class Include:
    """An `_include` (reverse=False) or `_revinclude` (reverse=True) directive."""

    source_type: str
    param_code: str  # "*" for every reference parameter of source_type
    param_ids: tuple[int, ...]
    target_type: str | None
    iterate: bool
    reverse: bool


@dataclass(frozen=True)
class Cursor:
    """Keyset paging position: the sort key values and pk of the row the page continues from.

    Normally the page holds the rows after that row (the last row of the page before); with
    `before`, the rows just before it (the first row of the page after), for `previous` links.
    """

    keys: tuple[Any, ...]
    pk: int
    before: bool = False


@dataclass(frozen=True)
class SearchQuery:
    """A parsed search."""

    resource_type: str | None
    types: tuple[str, ...]  # the types searched; empty: every type (system search without _type)
    criteria: tuple[Criterion, ...] = ()
    sort: tuple[SortKey, ...] = ()
    count: int | None = None
    includes: tuple[Include, ...] = ()
    summary: str | None = None
    elements: tuple[str, ...] = ()
    total: str | None = None
    cursor: Cursor | None = None
    used: tuple[tuple[str, str], ...] = ()  # parameters applied, for the self link (no _cursor)
    ignored: tuple[tuple[str, str], ...] = ()  # parameters left out (lenient handling, empty values)

    @property
    def sort_signature(self) -> str:
        """The `_sort` value in canonical form; a cursor is only valid for the same signature."""
        return ",".join(("-" if k.descending else "") + k.param.code for k in self.sort)


class UnknownParameter(Invalid):
    """An unknown or unsupported parameter or modifier (ignored under lenient handling)."""


def _unknown(name: str, message: str) -> UnknownParameter:
    return UnknownParameter(f"Search parameter '{name}': {message}", expression=name)


def _default_registry() -> Registry:
    from fhir_server.search import parameters

    return parameters


def encode_cursor(
    signature: str,
    keys: Sequence[Any],
    pk: int,
    *,
    before: bool = False,
    key: bytes = cursor_signing.PROCESS_KEY,
) -> str:
    """Opaque `_cursor` value: base64url of the sort signature, the sort key values, the pk (and direction),
    signed with `key`."""
    data: list[Any] = [signature, list(keys), pk]
    if before:
        data.append(1)
    raw = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return cursor_signing.sign(base64.urlsafe_b64encode(raw.encode()).decode().rstrip("="), key)


def decode_cursor(
    text: str, signature: str, n_keys: int, *, key: bytes = cursor_signing.PROCESS_KEY
) -> Cursor:
    """Decode a `_cursor`; it must be signed with `key` and come from a search with the same `_sort`."""
    payload = cursor_signing.verify(text, key)
    if payload is None:
        fail("_cursor", "not a paging cursor issued by this server")
    text = payload
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data = json.loads(raw.decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        fail("_cursor", "not a valid paging cursor")
    ok = (
        isinstance(data, list)
        and len(data) in (3, 4)
        and (len(data) == 3 or data[3] == 1)
        and data[0] == signature
        and isinstance(data[1], list)
        and len(data[1]) == n_keys
        and all(v is None or isinstance(v, (str, int, float)) for v in data[1])
        and isinstance(data[2], int)
        and not isinstance(data[2], bool)
    )
    if not ok:
        fail("_cursor", "the paging cursor does not belong to this search")
    return Cursor(tuple(data[1]), data[2], before=len(data) == 4)


@dataclass
class _Parser:
    registry: Registry
    lenient: bool
    now: int
    max_count: int
    used: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)

    # ---- parameter resolution ----

    def all_types(self) -> tuple[str, ...]:
        listed = getattr(self.registry, "resource_types", None)
        return tuple(listed()) if callable(listed) else tuple(sorted(resource_types()))

    def resolve(self, types: tuple[str, ...], code: str, name: str) -> Param:
        if code == "_id":
            return Param("_id", "id", types, ())
        if code == "_lastUpdated":
            return Param("_lastUpdated", "lastUpdated", types, ())
        scope = types or self.all_types()
        found = [(t, self.registry.get(t, code)) for t in scope]
        missing = [t for t, sp in found if sp is None]
        if missing:
            where = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
            raise _unknown(name, f"unknown search parameter '{code}' for {where}")
        kinds = {getattr(sp, "kind", sp.type) for _, sp in found}
        if len(kinds) != 1:
            raise _unknown(name, f"'{code}' has different types across {', '.join(scope)}")
        kind = kinds.pop()
        if kind not in REGISTRY:  # `special` (e.g. near) is not supported
            raise _unknown(name, f"parameters of type '{kind}' are not supported")
        targets: list[str] = []
        for _, sp in found:
            targets.extend(t for t in (sp.targets or ()) if t not in targets)
        first = found[0][1]
        components = tuple(_component_type(c) for c in (first.components or ()))
        ids = tuple(i for t, sp in found for i in self._row_ids(t, sp, ""))
        joined = tuple(
            j for t, sp in found for j in joined_ids(sp, t, self.registry.param_id, self.registry.get)
        )
        return Param(code, kind, types, ids, tuple(targets), components, joined)

    def _row_ids(self, resource_type: str, sp: Any, suffix: str) -> tuple[int, ...]:
        return row_ids(sp, resource_type, suffix, self.registry.param_id, self.registry.get)

    def has_param(self, resource_type: str, code: str) -> bool:
        if code in ("_id", "_lastUpdated") or code.startswith("_has"):
            return True
        return self.registry.get(resource_type, code) is not None

    def aux_ids(self, param: Param, suffix: str) -> tuple[int, ...]:
        scope = param.resource_types or self.all_types()
        return tuple(i for t in scope for i in self._row_ids(t, self.registry.get(t, param.code), suffix))

    # ---- criteria ----

    def criterion(self, types: tuple[str, ...], key: str, value: str, name: str) -> Criterion:
        if key.startswith("_has:") or key == "_has":
            parts = key.split(":", 3)
            if len(parts) != 4 or not all(parts):
                fail(name, "expected _has:Type:reference-parameter:parameter")
            _, source, ref_code, rest = parts
            if not is_resource_type(source):
                raise _unknown(name, f"unknown resource type '{source}'")
            ref = self.resolve((source,), ref_code, name)
            if ref.type != "reference":
                fail(name, f"'{ref_code}' of {source} is not a reference parameter")
            if types and ref.targets and not set(types) & set(ref.targets):
                fail(name, f"{source}.{ref_code} cannot refer to {', '.join(types)}")
            return Has(name, source, ref, self.criterion((source,), rest, value, name))
        head, dot, tail = key.partition(".")
        code, _, modifier = head.partition(":")
        if not code:
            raise _unknown(name, "empty parameter name")
        if dot:
            param = self.resolve(types, code, name)
            if param.type != "reference":
                fail(name, f"'{code}' is not a reference parameter, so it cannot be chained")
            if not tail:
                fail(name, "nothing after the '.' of the chain")
            candidates = param.targets or self.all_types()
            if modifier:
                if not is_resource_type(modifier) or (param.targets and modifier not in param.targets):
                    raise _unknown(name, f"'{code}' cannot refer to '{modifier}'")
                candidates = (modifier,)
            next_code = tail.partition(".")[0].partition(":")[0]
            targets = tuple(t for t in candidates if self.has_param(t, next_code))
            if not targets:
                raise _unknown(name, f"no type '{code}' refers to has a search parameter '{next_code}'")
            return Chain(name, param, targets, self.criterion(targets, tail, value, name))
        param = self.resolve(types, code, name)
        return self.filter(param, modifier or None, value, name)

    def filter(self, param: Param, modifier: str | None, value: str, name: str) -> Filter:
        kind = param.type
        search_type = REGISTRY[kind]
        type_modifier: str | None = None
        if modifier is not None and modifier not in search_type.modifiers:
            if search_type.type_modifiers and is_resource_type(modifier):
                if param.targets and modifier not in param.targets:
                    raise _unknown(name, f"'{param.code}' cannot refer to '{modifier}'")
                type_modifier = modifier
            else:
                raise _unknown(name, f"modifier ':{modifier}' is not supported on {kind} parameters")
        pieces = split(value, ",", name)
        aux: tuple[int, ...] = ()
        parse_one: Callable[[str], Value]
        if modifier == "missing":
            parse_one = partial(_parse_missing, name=name)
        else:
            components: tuple[Callable[[str], Any], ...] = ()
            if search_type.components:
                components = tuple(self.value_parser(t, name) for t in param.components)
                if not components:
                    raise _unknown(name, "composite parameter without components")
            parse_one = search_type.parser(Parsing(name, modifier, self.now, type_modifier, components))
            if modifier is not None and modifier == search_type.aux_modifier:
                assert search_type.aux_suffix is not None
                aux = self.aux_ids(param, search_type.aux_suffix)
        values = tuple(parse_one(piece) for piece in pieces)
        return Filter(name, param, "type" if type_modifier else modifier, values, aux)

    def value_parser(self, kind: str, name: str) -> Callable[[str], Any]:
        """The parser of a composite's component: a type with index rows of its own, no modifier."""
        search_type = REGISTRY.get(kind)
        if search_type is None or search_type.values is None:
            raise _unknown(name, f"composite component type '{kind}' is not supported")
        return search_type.parser(Parsing(name, None, self.now))

    # ---- result parameters ----

    def sort_keys(self, types: tuple[str, ...], value: str, name: str, descending: bool) -> list[SortKey]:
        keys: list[SortKey] = []
        for item in value.split(","):
            item = item.strip()
            desc = descending
            if item.startswith("-"):
                desc, item = True, item[1:]
            if not item:
                fail(name, "empty sort key")
            try:
                param = self.resolve(types, item, name)
            except UnknownParameter:
                if not self.lenient:
                    raise
                self.ignored.append((name, item))
                continue
            if REGISTRY[param.type].sort_column is None:
                fail(name, f"cannot sort on '{item}' (a {param.type} parameter)")
            keys.append(SortKey(param, desc))
        return keys

    def include(self, value: str, name: str, reverse: bool, iterate: bool) -> Include | None:
        if value == "*":
            return Include("*", "*", (), None, iterate, reverse)
        parts = value.split(":")
        if len(parts) not in (2, 3) or not all(parts):
            fail(name, f"{value!r}: expected Type:parameter[:targetType] or *")
        source, code = parts[0], parts[1]
        target = parts[2] if len(parts) == 3 else None
        if not is_resource_type(source):
            raise _unknown(name, f"unknown resource type '{source}'")
        if target is not None and not is_resource_type(target):
            raise _unknown(name, f"unknown resource type '{target}'")
        if code == "*":
            ids = tuple(
                sp.param_id
                for sp in _params_of(self.registry, source)
                if sp.type == "reference" and not getattr(sp, "parts", ())  # parts: no rows of its own
            )
            return Include(source, "*", ids, target, iterate, reverse)
        param = self.resolve((source,), code, name)
        if param.type != "reference":
            fail(name, f"'{code}' of {source} is not a reference parameter")
        if target is not None and param.targets and target not in param.targets:
            raise _unknown(name, f"{source}.{code} cannot refer to '{target}'")
        return Include(source, code, param.ids, target, iterate, reverse)


def _component_type(component: Any) -> str:
    kind = getattr(component, "type", None)
    if kind is None and isinstance(component, Mapping):
        kind = component.get("type")
    return str(kind)


def _params_of(registry: Registry, resource_type: str) -> Iterable[Any]:
    found = registry.for_type(resource_type)
    if isinstance(found, Mapping):
        return list(found.values())
    return list(found or ())


def _parse_missing(text: str, name: str) -> MissingValue:
    if text not in ("true", "false"):
        fail(name, ":missing takes true or false")
    return MissingValue(text == "true")


# ---------------------------------------------------------------- result parameters
# https://hl7.org/fhir/R4/search.html#return (and `_type`, `_cursor`): one parser per name.


@dataclass
class _Results:
    """The result parameters read so far."""

    resource_type: str | None
    types: tuple[str, ...]
    sort: list[SortKey] = field(default_factory=list)
    includes: list[Include] = field(default_factory=list)
    count: int | None = None
    summary: str | None = None
    elements: list[str] = field(default_factory=list)
    total: str | None = None
    cursor_text: str | None = None


@dataclass(frozen=True)
class ResultParameter:
    """How one result parameter is read: `parse(parser, results, name, modifier, value)`."""

    parse: Callable[[_Parser, _Results, str, str, str], None]
    modifiers: frozenset[str] | None = None  # None: no modifier (`name:x` is then a search parameter)
    listed: bool = True  # in SearchQuery.used as given (`_count` is listed once as applied, `_cursor` never)


_SUMMARY = frozenset({"true", "text", "data", "count", "false"})
_TOTAL = frozenset({"none", "estimate", "accurate"})


def _type(p: _Parser, r: _Results, name: str, mod: str, value: str) -> None:
    # the types themselves were read before the other parameters (they scope them)
    if r.resource_type is not None:
        raise _unknown(name, "_type applies to system-level search only")


def _sort(p: _Parser, r: _Results, name: str, mod: str, value: str) -> None:
    r.sort.extend(p.sort_keys(r.types, value, name, mod == "desc"))


def _count(p: _Parser, r: _Results, name: str, mod: str, value: str) -> None:
    if not value.isdigit() or len(value) > 9:
        fail(name, "must be a whole number >= 0")
    r.count = min(int(value), p.max_count)


def _include(p: _Parser, r: _Results, name: str, mod: str, value: str, *, reverse: bool) -> None:
    inc = p.include(value, name, reverse, bool(mod))
    if inc is not None:
        r.includes.append(inc)


def _summary(p: _Parser, r: _Results, name: str, mod: str, value: str) -> None:
    if value not in _SUMMARY:
        fail(name, f"must be one of {', '.join(sorted(_SUMMARY))}")
    r.summary = value


def _elements(p: _Parser, r: _Results, name: str, mod: str, value: str) -> None:
    items = [e.strip() for e in value.split(",")]
    if not all(items):
        fail(name, "empty element name")
    r.elements.extend(e for e in items if e not in r.elements)


def _total(p: _Parser, r: _Results, name: str, mod: str, value: str) -> None:
    if value not in _TOTAL:
        fail(name, f"must be one of {', '.join(sorted(_TOTAL))}")
    r.total = value


def _cursor(p: _Parser, r: _Results, name: str, mod: str, value: str) -> None:
    r.cursor_text = value  # decoded once the sort is known


_INCLUDE_MODIFIERS = frozenset({"", "iterate", "recurse"})
RESULT_PARAMETERS: dict[str, ResultParameter] = {
    "_type": ResultParameter(_type),
    "_sort": ResultParameter(_sort, modifiers=frozenset({"", "asc", "desc"})),
    "_count": ResultParameter(_count, listed=False),
    "_include": ResultParameter(partial(_include, reverse=False), modifiers=_INCLUDE_MODIFIERS),
    "_revinclude": ResultParameter(partial(_include, reverse=True), modifiers=_INCLUDE_MODIFIERS),
    "_summary": ResultParameter(_summary),
    "_elements": ResultParameter(_elements),
    "_total": ResultParameter(_total),
    "_cursor": ResultParameter(_cursor, listed=False),
}
"""The result parameters by name; any other parameter is a search criterion."""


def parse(
    resource_type: str | None,
    params: Iterable[tuple[str, str]],
    *,
    lenient: bool,
    registry: Registry | None = None,
    now_us: int | None = None,
    max_count: int = DEFAULT_MAX_COUNT,
    cursor_key: bytes = cursor_signing.PROCESS_KEY,
) -> SearchQuery:
    """Parse decoded query parameters (in order) into a SearchQuery; raises errors.Invalid (400)."""
    pairs = list(params)
    p = _Parser(registry or _default_registry(), lenient, _now_us() if now_us is None else now_us, max_count)
    if resource_type is not None and not is_resource_type(resource_type):
        raise Invalid(f"Unknown resource type '{resource_type}'", expression=resource_type)

    types: tuple[str, ...] = (resource_type,) if resource_type else ()
    type_values = [v for k, v in pairs if k == "_type"]
    if resource_type is None and type_values:
        names: list[str] = []
        for v in type_values:
            for t in v.split(","):
                t = t.strip()
                if not is_resource_type(t):
                    raise _unknown("_type", f"unknown resource type '{t}'")
                if t not in names:
                    names.append(t)
        types = tuple(names)

    criteria: list[Criterion] = []
    r = _Results(resource_type, types)
    for name, value in pairs:
        base, _, mod = name.partition(":")
        try:
            if name in _TRANSPORT:
                continue
            if value == "":
                p.ignored.append((name, value))
                continue
            result = RESULT_PARAMETERS.get(base)
            if result is not None and (result.modifiers is not None or name == base):
                if result.modifiers is not None and mod not in result.modifiers:
                    raise _unknown(name, f"unknown modifier ':{mod}'")
                result.parse(p, r, name, mod, value)
                if not result.listed:
                    continue
            else:
                criteria.append(p.criterion(types, name, value, name))
        except UnknownParameter:
            if not lenient:
                raise
            p.ignored.append((name, value))
            continue
        p.used.append((name, value))
    if r.count is not None:
        p.used.append(("_count", str(r.count)))

    sort_t = tuple(r.sort)
    query = SearchQuery(
        resource_type=resource_type,
        types=types,
        criteria=tuple(criteria),
        sort=sort_t,
        count=r.count,
        includes=tuple(r.includes),
        summary=r.summary,
        elements=tuple(r.elements),
        total=r.total,
        used=tuple(p.used),
        ignored=tuple(p.ignored),
    )
    if r.cursor_text is not None:
        cursor = decode_cursor(r.cursor_text, query.sort_signature, len(sort_t), key=cursor_key)
        query = replace(query, cursor=cursor)
    return query
