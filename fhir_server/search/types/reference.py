"""Reference search parameters (https://hl7.org/fhir/R4/search.html#reference).

Index rows (param_id, grp, target_type, target_id, url):
- relative `Type/id` (a `/_history/n` dropped) -> (Type, id, None);
- absolute URL -> url = the URL, and when it ends with `Type/id` (optionally `/_history/n`) of a known
  resource type, target_type/target_id too (the search side may match them against its base);
- canonical / uri used as a reference -> url (any `|version` kept);
- a resource itself (Bundle.entry[0].resource) -> (resourceType, id, None);
- Reference.identifier -> a token row (system, value, type.text) under the auxiliary
  `code:identifier` param id; contained `#x` references are not indexed.

Search values: `[id]`, `[type]/[id]`, `[type]/[id]/_history/[version]` (the version is ignored, as in the index),
an absolute URL, or a canonical `url|version`. With the `:[type]` modifier the value is an id.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_

from fhir_server.model import is_resource_type
from fhir_server.search.parameters import IDENTIFIER_SUFFIX
from fhir_server.search.types.base import Parsing, RowSink, SearchType, SqlContext
from fhir_server.search.types.token import TokenValue, parse_token, token_test
from fhir_server.search.values import fail, unescape

KIND = "reference"
MAX_URL = 512
MAX_ID = 64
_LOCAL = re.compile(r"([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?")
_TAIL = re.compile(r".*/([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?")


@functools.cache
def _resource_types() -> frozenset[str]:
    from fhir_server.search.parameters import resource_types

    return frozenset(resource_types())


@functools.lru_cache(maxsize=65536)
def index_target(reference: str) -> tuple[str | None, str | None, str | None] | None:
    """(target_type, target_id, url) of a Reference.reference string; None when not indexed."""
    if not reference or reference.startswith("#"):
        return None
    m = _LOCAL.fullmatch(reference)
    if m is not None:
        return m.group(1), m.group(2), None
    url = reference[:MAX_URL]
    if ":" in reference:
        m = _TAIL.fullmatch(reference)
        if m is not None and m.group(1) in _resource_types():
            return m.group(1), m.group(2), url
    return None, None, url


def _identifier_row(identifier: Any, param_id: int, grp: int) -> tuple[Any, ...] | None:
    if identifier.__class__ is not dict:
        return None
    system, value = identifier.get("system"), identifier.get("value")
    system = system[:255] if system.__class__ is str and system else None
    value = value[:255] if value.__class__ is str and value else None
    if system is None and value is None:
        return None
    type_ = identifier.get("type")
    text = type_.get("text") if type_.__class__ is dict else None
    return (param_id, grp, system, value, text.lower()[:255] if text.__class__ is str and text else None)


def values(
    elements: list[Any],
    fhir_type: str,
    param_id: int,
    grp: int,
    sink: RowSink,
    aux_param_id: int | None = None,
) -> None:
    """Append reference rows; Reference.identifier goes to the token table under `aux_param_id`."""
    rows = sink[KIND]
    for element in elements:
        if element.__class__ is str:
            if fhir_type in ("canonical", "uri", "url", "*") and element:
                rows.append((param_id, grp, None, None, element[:MAX_URL]))
            continue
        if element.__class__ is not dict:
            continue
        if fhir_type in ("Reference", "*") and "resourceType" not in element:
            reference = element.get("reference")
            if reference.__class__ is str:
                parsed = index_target(reference)
                if parsed is not None:
                    rows.append((param_id, grp, *parsed))
            if aux_param_id is not None and "identifier" in element:
                row = _identifier_row(element["identifier"], aux_param_id, grp)
                if row is not None:
                    sink["token"].append(row)
        elif "resourceType" in element:  # a resource in place of a reference (Bundle.entry[0].resource)
            kind, id_ = element.get("resourceType"), element.get("id")
            if kind.__class__ is str and id_.__class__ is str and id_:
                rows.append((param_id, grp, kind, id_[:MAX_ID], None))


# ---------------------------------------------------------------- search values


@dataclass(frozen=True)
class ReferenceValue:
    """A local target (type may be None: any type) or an absolute/canonical `url`."""

    type: str | None
    id: str | None
    url: str | None


def _is_absolute(value: str) -> bool:
    head = value.split("/", 1)[0]
    return ":" in head


def parse_reference(text: str, param: str, type_modifier: str | None = None) -> ReferenceValue:
    """Parse a reference value; `type_modifier` is the resource type of a `:[type]` modifier."""
    value = unescape(text, param)
    if not value:
        fail(param, "an empty reference")
    if type_modifier is not None:
        if value.startswith(type_modifier + "/"):
            value = value[len(type_modifier) + 1 :]
        if "/" in value or _is_absolute(value):
            fail(param, f"with :{type_modifier} the value must be an id, not {value!r}")
        return ReferenceValue(type_modifier, value, None)
    if _is_absolute(value):
        return ReferenceValue(None, None, value)
    parts = value.split("/")
    if len(parts) == 1:
        return ReferenceValue(None, value, None)
    if len(parts) in (2, 4) and is_resource_type(parts[0]) and parts[1]:
        if len(parts) == 4 and (parts[2] != "_history" or not parts[3]):
            fail(param, f"{value!r} is not a reference")
        return ReferenceValue(parts[0], parts[1], None)
    fail(param, f"{value!r} is not a reference ([type]/[id], [id] or an absolute URL)")


# ---------------------------------------------------------------- SQL


def reference_test(ctx: SqlContext, v: ReferenceValue, ref: Any) -> ColumnElement[bool]:
    """The reference value against one idx_reference row (absolute URLs under the base match local ones)."""
    if v.url is not None:
        conds = [ref.c.url == v.url]
        base = ctx.base_url
        if base and v.url.startswith(base + "/"):
            parts = v.url[len(base) + 1 :].split("/")
            if len(parts) in (2, 4) and parts[0] and parts[1]:
                conds.append(
                    and_(
                        ref.c.target_id == parts[1],
                        ref.c.target_type == parts[0],
                        ref.c.url.is_(None),
                    )
                )
        return or_(*conds)
    conds = [ref.c.target_id == v.id]
    if v.type is not None:
        conds.append(ref.c.target_type == v.type)
    conds.append(ctx.local(ref))
    return and_(*conds)


def test(
    ctx: SqlContext, modifier: str | None, v: ReferenceValue | TokenValue, t: Any
) -> ColumnElement[bool]:
    """A reference against idx_reference, or with `:identifier` a token against the idx_token aux rows."""
    if isinstance(v, TokenValue):
        return token_test(v, t)
    return reference_test(ctx, v, t)


def _parser(p: Parsing) -> Callable[[str], ReferenceValue | TokenValue]:
    if p.modifier == "identifier":
        return partial(parse_token, param=p.name)
    return partial(parse_reference, param=p.name, type_modifier=p.type_modifier)


REFERENCE = SearchType(
    "reference",
    frozenset({"missing", "identifier"}),
    _parser,
    test=test,
    sort_column=lambda t, descending: func.coalesce(t.c.target_type + "/" + t.c.target_id, t.c.url),
    selective=lambda modifier: True,
    values=values,
    aux_modifier="identifier",
    aux_suffix=IDENTIFIER_SUFFIX,
    type_modifiers=True,
)
