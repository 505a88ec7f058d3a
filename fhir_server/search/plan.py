"""Plan a parsed search as one SQLAlchemy Core SELECT over the index tables (https://hl7.org/fhir/R4/search.html).

`build(query)` selects (pk, content, sort_0, ...) of the current, non-deleted resources that match,
ordered by the `_sort` keys (NULLs last) then pk, after the `_cursor` position, with LIMIT count+1
so the caller knows whether a next page exists. `count(query)` serves `_total=accurate`;
`condition(query)` is a search as one condition (access rules); `includes(...)` fetches the
`_include` / `_revinclude` resources of a page. The store runs them: `tx.run_search(stmt)`
(store/unprepared.py: unprepared on PostgreSQL).

The parts, by concept: search/criteria.py (the criteria's SQL, each type's test from
search/types), search/chains.py (chains and `_has`), search/paging.py (sorted pages and cursors),
search/includes.py (`_include`, `_revinclude`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, select

from fhir_server.search.criteria import Planner, where
from fhir_server.search.includes import includes as includes
from fhir_server.search.paging import PkBound, pk_page, sorted_page
from fhir_server.search.paging import next_cursor as next_cursor
from fhir_server.search.paging import previous_cursor as previous_cursor
from fhir_server.search.query import SearchQuery
from fhir_server.search.types.base import Canonicalize as Canonicalize
from fhir_server.search.types.base import SqlContext
from fhir_server.search.types.base import Terminology as Terminology
from fhir_server.store import tables

DEFAULT_COUNT = 20
_R = tables.resource


def _default_canonical() -> Canonicalize | None:
    """UCUM canonical conversion as the indexer does it (fhir_server.search.ucum)."""
    from fhir_server.search import ucum

    def convert(code: str, value: float) -> tuple[float, str] | None:
        return ucum.to_canonical(value, code)

    return convert


def _planner(
    base_url: str | None, terminology: Terminology | None, canonical: Canonicalize | None
) -> Planner:
    return Planner(
        SqlContext(
            base_url.rstrip("/") if base_url else None,
            terminology,
            canonical if canonical is not None else _default_canonical(),
        )
    )


def build(
    query: SearchQuery,
    *,
    compartment: tuple[str, str] | None = None,
    restrict: ColumnElement[bool] | None = None,
    base_url: str | None = None,
    terminology: Terminology | None = None,
    canonical: Canonicalize | None = None,
    default_count: int = DEFAULT_COUNT,
) -> Select[Any]:
    """The page query: rows (pk, content, sort_0, ...) in order, after the cursor, LIMIT count+1.

    `compartment` is (compartment type, id), e.g. ("Patient", "123"); `restrict` is an extra condition
    on `tables.resource` (e.g. access rules); `base_url` lets absolute references to this server match
    relative ones; `terminology` serves :in/:not-in/:above/:below on tokens.
    """
    planner = _planner(base_url, terminology, canonical)
    limit = (query.count if query.count is not None else default_count) + 1
    cursor = query.cursor
    if not query.sort:
        if cursor is not None:  # repeated inside the driving IN list, so its index scan starts there
            planner.after = PkBound(cursor.pk, cursor.before)
        return pk_page(query, where(query, planner, compartment, restrict), limit)
    return sorted_page(query, where(query, planner, compartment, restrict), limit)


def count(
    query: SearchQuery,
    *,
    compartment: tuple[str, str] | None = None,
    restrict: ColumnElement[bool] | None = None,
    base_url: str | None = None,
    terminology: Terminology | None = None,
    canonical: Canonicalize | None = None,
) -> Select[Any]:
    """SELECT count(*) of every match (ignores sort, paging and the cursor), for `_total=accurate`."""
    planner = _planner(base_url, terminology, canonical)
    matches = select(_R.c.pk).where(*where(query, planner, compartment, restrict)).subquery()
    return select(func.count()).select_from(matches)


def condition(
    query: SearchQuery, *, compartment: tuple[str, str] | None = None, base_url: str | None = None
) -> ColumnElement[bool]:
    """The query's criteria (types, compartment, not deleted) as ONE condition on `tables.resource`:
    what access rules AND into a search as `restrict` (auth/enforce.py)."""
    return and_(*where(query, _planner(base_url, None, None), compartment, None))
