"""String search parameters (https://hl7.org/fhir/R4/search.html#string).

Index rows (param_id, grp, norm, exact): `norm` is NFKD with combining marks dropped, casefolded, with
whitespace runs folded to one space and stripped; `exact` is the value as is; both cut to 255.
HumanName gives family, each given, prefix, suffix and text; Address gives each line, city,
district, state, postalCode, country and text.

Search: by default a string matches, case- and accent-insensitively, any indexed string that starts with it;
`:contains` matches anywhere, `:exact` matches the whole value exactly. `normalize` is the folding
the index applies to `idx_string.norm` (docs/index-rows.md), shared with the indexer.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement

from fhir_server.search.types.base import LIKE_ESCAPE, Parsing, RowSink, SearchType, SqlContext, like_prefix
from fhir_server.search.values import unescape

KIND = "string"
MAX = 255
HUMAN_NAME = ("family", "given", "prefix", "suffix", "text")
ADDRESS = ("line", "city", "district", "state", "postalCode", "country", "text")
_PARTS = {"HumanName": HUMAN_NAME, "Address": ADDRESS}


def normalize(text: str) -> str:
    """The search form of a string: accents and case dropped, whitespace folded, cut to 255."""
    if text.isascii():
        return " ".join(text.lower().split())[:MAX]
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())[:MAX]


def _strings(element: Any, fhir_type: str) -> list[str]:
    if element.__class__ is str:
        return [element]
    if element.__class__ is not dict:
        return []
    parts = _PARTS.get(fhir_type)
    if parts is None:  # untyped: tell HumanName and Address apart by their elements
        parts = ADDRESS if ("line" in element or "city" in element or "postalCode" in element) else HUMAN_NAME
    out: list[str] = []
    for key in parts:
        v = element.get(key)
        if v.__class__ is str:
            out.append(v)
        elif v.__class__ is list:
            out.extend(x for x in v if x.__class__ is str)
    return out


def values(
    elements: list[Any],
    fhir_type: str,
    param_id: int,
    grp: int,
    sink: RowSink,
    aux_param_id: int | None = None,
) -> None:
    """Append one string row per string the elements hold."""
    rows = sink[KIND]
    for element in elements:
        for text in _strings(element, fhir_type):
            norm = normalize(text)
            if norm:
                rows.append((param_id, grp, norm, text[:MAX]))


# ---------------------------------------------------------------- search values

MAX_LEN = MAX


@dataclass(frozen=True)
class StringValue:
    """The literal text searched for and its normalised form."""

    text: str
    norm: str


def parse_string(text: str, param: str) -> StringValue:
    """Unescape a string value."""
    value = unescape(text, param)
    return StringValue(value, normalize(value))


# ---------------------------------------------------------------- SQL


def test(ctx: SqlContext, modifier: str | None, v: StringValue, t: Any) -> ColumnElement[bool]:
    """Starts with (default), `:contains` or `:exact` against one idx_string row."""
    if modifier == "exact":
        return t.c.exact == v.text[:MAX_LEN]
    if modifier == "contains":
        return t.c.norm.like("%" + like_prefix(v.norm) + "%", escape=LIKE_ESCAPE)
    return t.c.norm.like(like_prefix(v.norm) + "%", escape=LIKE_ESCAPE)


def _parser(p: Parsing) -> Callable[[str], StringValue]:
    return partial(parse_string, param=p.name)


STRING = SearchType(
    "string",
    frozenset({"missing", "exact", "contains"}),
    _parser,
    test=test,
    sort_column=lambda t, descending: t.c.norm,
    selective=lambda modifier: modifier == "exact",
    values=values,
)
