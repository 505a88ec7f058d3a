"""Sorted pages and keyset paging cursors (https://hl7.org/fhir/R4/search.html#sort, http.html#paging).

A page is read after (or, for `previous`, before) the `_cursor` position: the sort key values and pk
of the last (first) row shown, so page N costs what page 1 costs (no OFFSET). The `_cursor` value is
signed (search/cursor_signing.py) and encoded by search/query.py (`encode_cursor`). A sort on an
indexed parameter reads its index table in order, one row per resource (see `sorted_page`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    and_,
    cast,
    column,
    false,
    func,
    not_,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from fhir_server.search.cursor_signing import PROCESS_KEY
from fhir_server.search.query import SearchQuery, SortKey, encode_cursor
from fhir_server.search.types import REGISTRY
from fhir_server.search.types.base import of_params
from fhir_server.store import tables

_R = tables.resource


@dataclass(frozen=True)
class PkBound:
    """The keyset position of a page in pk order: pks after (or, going back, before) `pk`."""

    pk: int
    back: bool

    def test(self, col: Any) -> ColumnElement[bool]:
        return col < self.pk if self.back else col > self.pk


class _RowId(FunctionElement[Any]):
    """The physical id (ctid, SQLite rowid) of the index row one of whose columns is given."""

    # It tells apart the rows of one resource that hold the same sort value.
    name = "rowid"
    inherit_cache = True


def _rowid(element: _RowId, name: str, compiler: Any, **kw: Any) -> str:
    (col,) = element.clauses.clauses
    return str(compiler.process(column(name, _selectable=col.table), **kw))


@compiles(_RowId)
def _rowid_default(element: _RowId, compiler: Any, **kw: Any) -> str:
    return _rowid(element, "ctid", compiler, **kw)


@compiles(_RowId, "sqlite")
def _rowid_sqlite(element: _RowId, compiler: Any, **kw: Any) -> str:
    return _rowid(element, "rowid", compiler, **kw)


def key_column(key: SortKey, t: Any) -> Any:
    """The value of an index row `t` that a sort on `key` orders by (NULL: the row gives none)."""
    sort_column = REGISTRY[key.param.type].sort_column
    assert sort_column is not None  # the parser refuses a sort on any other type
    return sort_column(t, key.descending)


def sort_expr(key: SortKey, res: Any) -> Any:
    """The sort value of `res`: a resource column, or the min (max when descending) of its rows."""
    p = key.param
    if p.on_resource_table:
        return key_column(key, res)
    t = tables.INDEX_TABLES[p.type].alias()
    agg = func.max if key.descending else func.min
    return (
        select(agg(key_column(key, t)))
        .where(t.c.resource_pk == res.c.pk, of_params(t.c.param_id, p.ids))
        .scalar_subquery()
    )


def _after(col: Any, value: Any, descending: bool) -> ColumnElement[bool]:
    """Rows strictly after `value` in the order (NULLs last)."""
    if value is None:
        return false()
    return or_(col < value if descending else col > value, col.is_(None))


def _before(col: Any, value: Any, descending: bool) -> ColumnElement[bool]:
    """Rows strictly before `value` in the order (NULLs last, so every non-NULL is before a NULL)."""
    if value is None:
        return col.is_not(None)
    return col > value if descending else col < value


def _same(col: Any, value: Any) -> ColumnElement[bool]:
    return col.is_(None) if value is None else col == value


def _keyset(
    cols: Sequence[Any], keys: Sequence[SortKey], values: Sequence[Any], pk: int, back: bool
) -> ColumnElement[bool]:
    """Rows after (going back: before) the position (values, pk) in the order of `cols`, then pk."""
    step = _before if back else _after
    alternatives: list[ColumnElement[bool]] = []
    for i, (col, key) in enumerate(zip(cols, keys, strict=True)):
        prior = [_same(c, v) for c, v in zip(cols[:i], values[:i], strict=True)]
        alternatives.append(and_(*prior, step(col, values[i], key.descending)))
    same = [_same(c, v) for c, v in zip(cols, values, strict=True)]
    alternatives.append(and_(*same, PkBound(pk, back).test(_R.c.pk)))
    return or_(*alternatives)


def _ordering(cols: Sequence[Any], keys: Sequence[SortKey], back: bool, pk: Any, plain: int = 0) -> list[Any]:
    """ORDER BY the sort columns (NULLs last) then pk; reversed going back."""
    # The first `plain` columns hold no NULLs and get no NULLS FIRST/LAST, so an index gives the order.
    order: list[Any] = []
    for i, (c, k) in enumerate(zip(cols, keys, strict=True)):
        term = c.asc() if k.descending == back else c.desc()
        order.append(term if i < plain else term.nulls_first() if back else term.nulls_last())
    return [*order, pk.desc() if back else pk]


def _sargable(col: Any, value: Any, key: SortKey, back: bool) -> ColumnElement[bool]:
    """The keyset test of the first sort key as a range its index scan can start from."""
    return col >= value if key.descending == back else col <= value


def pk_page(query: SearchQuery, conds: list[ColumnElement[bool]], limit: int) -> Select[Any]:
    """The page of an unsorted search: in pk order, after (going back: before) the cursor's pk."""
    cursor = query.cursor
    back = cursor is not None and cursor.before
    stmt = select(_R.c.pk, _R.c.content).where(*conds)
    if cursor is not None:
        stmt = stmt.where(PkBound(cursor.pk, back).test(_R.c.pk))
    return stmt.order_by(_R.c.pk.desc() if back else _R.c.pk).limit(limit)


def sorted_page(query: SearchQuery, conds: list[ColumnElement[bool]], limit: int) -> Select[Any]:
    """The page of a sorted search, read in the order of the first sort key's index."""
    # The first key of an index-backed parameter is read from a join with its index table, one row
    # per resource: the row holding the resource's min (descending: max) value. So a page can be read
    # in index order and stop after `limit` rows, with the cursor as the start of the index range.
    # The resources without a value come after all others (NULLs last) and are read only when the
    # rows with a value do not fill the page (a second SELECT behind a one-time test on the first
    # one's count).
    cursor = query.cursor
    back = cursor is not None and cursor.before
    head, rest = query.sort[0], query.sort[1:]
    rest_cols = [sort_expr(k, _R) for k in rest]
    if head.param.on_resource_table:  # _id, _lastUpdated: a column of the resource, never NULL
        col = sort_expr(head, _R)
        stmt = select(_R.c.pk, _R.c.content, *_labels([col, *rest_cols])).where(*conds)
        if cursor is not None:
            stmt = stmt.where(
                _sargable(col, cursor.keys[0], head, back),
                _keyset([col, *rest_cols], query.sort, cursor.keys, cursor.pk, back),
            )
        return stmt.order_by(*_ordering([col, *rest_cols], query.sort, back, _R.c.pk, plain=1)).limit(limit)

    ids = head.param.ids
    t = tables.INDEX_TABLES[head.param.type].alias()
    col = key_column(head, t)
    other = t.alias()
    better = or_(
        key_column(head, other) > col if head.descending else key_column(head, other) < col,
        and_(key_column(head, other) == col, _RowId(other.c.resource_pk) < _RowId(t.c.resource_pk)),
    )
    keyed = (
        select(_R.c.pk, _R.c.content, *_labels([col, *rest_cols]))
        .select_from(_R.join(t, t.c.resource_pk == _R.c.pk))
        .where(
            *conds,
            of_params(t.c.param_id, ids),
            col.is_not(None),
            ~select(other.c.resource_pk)
            .where(other.c.resource_pk == t.c.resource_pk, of_params(other.c.param_id, ids), better)
            .exists(),
        )
    )
    bare = t.alias()
    unkeyed = select(_R.c.pk, _R.c.content, *_labels([cast(null(), col.type), *rest_cols])).where(
        *conds,
        ~select(bare.c.resource_pk)
        .where(
            bare.c.resource_pk == _R.c.pk,
            of_params(bare.c.param_id, ids),
            key_column(head, bare).is_not(None),
        )
        .exists(),
    )
    keyed_order = _ordering([col, *rest_cols], query.sort, back, _R.c.pk, plain=1)
    unkeyed_order = _ordering(rest_cols, rest, back, _R.c.pk)
    zones: list[Select[Any]]
    if cursor is None:
        zones = [keyed.order_by(*keyed_order), unkeyed.order_by(*unkeyed_order)]
    elif cursor.keys[0] is not None:
        keyed = keyed.where(
            _sargable(col, cursor.keys[0], head, back),
            _keyset([col, *rest_cols], query.sort, cursor.keys, cursor.pk, back),
        ).order_by(*keyed_order)
        zones = [keyed] if back else [keyed, unkeyed.order_by(*unkeyed_order)]
    else:
        unkeyed = unkeyed.where(_keyset(rest_cols, rest, cursor.keys[1:], cursor.pk, back))
        zones = (
            [unkeyed.order_by(*unkeyed_order), keyed.order_by(*keyed_order)]
            if back
            else [unkeyed.order_by(*unkeyed_order)]
        )
    if len(zones) == 1:
        return zones[0].limit(limit)
    first = zones[0].limit(limit).cte("head")
    first_full = select(func.count()).select_from(first).scalar_subquery() >= limit
    second = zones[1].where(not_(first_full)).limit(limit).subquery("tail")
    both = union_all(select(first), select(second)).subquery("m")
    cols = [both.c[f"sort_{i}"] for i in range(len(query.sort))]
    return select(both).order_by(*_ordering(cols, query.sort, back, both.c.pk)).limit(limit)


def _labels(cols: Sequence[Any]) -> list[Any]:
    return [c.label(f"sort_{i}") for i, c in enumerate(cols)]


def next_cursor(query: SearchQuery, row: Row[Any], key: bytes = PROCESS_KEY) -> str:
    """The `_cursor` value that continues after `row` (the last row shown of a page), signed with `key`."""
    mapping = row._mapping
    keys = [mapping[f"sort_{i}"] for i in range(len(query.sort))]
    return encode_cursor(query.sort_signature, keys, int(mapping["pk"]), key=key)


def previous_cursor(query: SearchQuery, row: Row[Any], key: bytes = PROCESS_KEY) -> str:
    """The `_cursor` value for the page that ends just before `row` (the first row shown of a page)."""
    mapping = row._mapping
    keys = [mapping[f"sort_{i}"] for i in range(len(query.sort))]
    return encode_cursor(query.sort_signature, keys, int(mapping["pk"]), before=True, key=key)
