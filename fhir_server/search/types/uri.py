"""URI search parameters (https://hl7.org/fhir/R4/search.html#uri).

Index rows (param_id, grp, uri): uri, url, canonical, oid, uuid values as they are (cut to 512).

Search: a uri matches exactly (case-sensitive); `:below` also matches URLs under it by path segment, and
`:above` matches the URL itself and its ancestors by path segment (URLs only, not URNs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, func, or_

from fhir_server.search.types.base import Parsing, RowSink, SearchType, SqlContext
from fhir_server.search.values import fail, unescape

KIND = "uri"
MAX = 512


def values(
    elements: list[Any],
    fhir_type: str,
    param_id: int,
    grp: int,
    sink: RowSink,
    aux_param_id: int | None = None,
) -> None:
    """Append one uri row per non-empty string element."""
    rows = sink[KIND]
    for element in elements:
        if element.__class__ is str and element:
            rows.append((param_id, grp, element[:MAX]))


# ---------------------------------------------------------------- search values


@dataclass(frozen=True)
class UriValue:
    """A URI to match."""

    uri: str


def parse_uri(text: str, param: str) -> UriValue:
    """Unescape a uri value."""
    value = unescape(text, param)
    if not value:
        fail(param, "an empty uri")
    return UriValue(value)


def is_url(uri: str) -> bool:
    """True for hierarchical URLs (scheme://authority/...), where :above and :below apply."""
    scheme, sep, rest = uri.partition("://")
    return bool(sep and scheme and rest)


def ancestors(uri: str) -> tuple[str, ...]:
    """The URL and every ancestor by path segment, each with and without a trailing slash."""
    if not is_url(uri):
        return (uri,)
    scheme, _, rest = uri.partition("://")
    segments = rest.rstrip("/").split("/")
    out: list[str] = [uri]
    for n in range(len(segments), 0, -1):
        base = f"{scheme}://{'/'.join(segments[:n])}"
        out.extend((base, base + "/"))
    return tuple(dict.fromkeys(out))


# ---------------------------------------------------------------- SQL


def test(ctx: SqlContext, modifier: str | None, v: UriValue, t: Any) -> ColumnElement[bool]:
    """Exact match, or `:above` / `:below` by path segment, against one idx_uri row."""
    if modifier == "above" and is_url(v.uri):
        return t.c.uri.in_(ancestors(v.uri))
    if modifier == "below" and is_url(v.uri):
        prefix = v.uri.rstrip("/") + "/"
        return or_(t.c.uri == v.uri, func.substr(t.c.uri, 1, len(prefix)) == prefix)
    return t.c.uri == v.uri


def _parser(p: Parsing) -> Callable[[str], UriValue]:
    return partial(parse_uri, param=p.name)


URI = SearchType(
    "uri",
    frozenset({"missing", "above", "below"}),
    _parser,
    test=test,
    sort_column=lambda t, descending: t.c.uri,
    selective=lambda modifier: modifier != "below",
    values=values,
)
