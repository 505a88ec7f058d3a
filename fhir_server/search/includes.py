"""`_include` and `_revinclude` (https://hl7.org/fhir/R4/search.html#include): the resources a page brings along.

`includes(...)` follows the idx_reference rows of the page (`_include`: from the page's resources to
their targets; `_revinclude`: from resources that refer to the page), and `:iterate` directives again
from what was included, up to MAX_INCLUDE_DEPTH rounds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Executable, Row, Select, and_, false, select

from fhir_server.search.query import MAX_INCLUDE_DEPTH, Include, SearchQuery
from fhir_server.search.types.base import SqlContext, of_params
from fhir_server.store import tables

_R = tables.resource


def _include_stmt(inc: Include, frontier: Sequence[int], ctx: SqlContext) -> Select[Any]:
    ref = tables.idx_reference.alias()
    conds: list[ColumnElement[bool]] = [ctx.local(ref), _R.c.deleted == false()]
    if inc.param_code != "*" or inc.source_type != "*":
        if not inc.param_ids:
            conds.append(false())
        else:
            conds.append(of_params(ref.c.param_id, inc.param_ids))
    if not inc.reverse:
        conds.append(ref.c.resource_pk.in_(frontier))
        if inc.target_type is not None:
            conds.append(ref.c.target_type == inc.target_type)
        join = ref.join(_R, and_(_R.c.res_type == ref.c.target_type, _R.c.res_id == ref.c.target_id))
        return select(_R.c.pk, _R.c.content).select_from(join).where(*conds)
    page = _R.alias()
    if inc.target_type is not None:
        conds.append(ref.c.target_type == inc.target_type)
    if inc.source_type != "*":
        conds.append(_R.c.res_type == inc.source_type)
    join = ref.join(_R, _R.c.pk == ref.c.resource_pk).join(
        page, and_(page.c.res_type == ref.c.target_type, page.c.res_id == ref.c.target_id)
    )
    return select(_R.c.pk, _R.c.content).select_from(join).where(page.c.pk.in_(frontier), *conds)


def includes(
    run: Callable[[Executable], Iterable[Row[Any]]],
    query: SearchQuery,
    page_pks: Sequence[int],
    *,
    restrict: ColumnElement[bool] | None = None,
    base_url: str | None = None,
) -> list[Row[Any]]:
    """The resources `_include`d / `_revinclude`d by a page: rows (pk, content), none repeated and none
    of the page itself. `:iterate` directives are applied again to what was included, a few rounds deep.
    `run` executes each statement (`tx.run_search`: the store runs what search builds)."""
    if not query.includes or not page_pks:
        return []
    ctx = SqlContext(base_url.rstrip("/") if base_url else None, None, None)
    seen = set(page_pks)
    out: list[Row[Any]] = []
    frontier = list(page_pks)
    directives = list(query.includes)
    for _ in range(MAX_INCLUDE_DEPTH):
        fresh: list[Row[Any]] = []
        for inc in directives:
            stmt = _include_stmt(inc, frontier, ctx)
            if restrict is not None:
                stmt = stmt.where(restrict)
            for row in run(stmt.order_by(_R.c.pk)):
                if row.pk not in seen:
                    seen.add(row.pk)
                    fresh.append(row)
        out.extend(fresh)
        directives = [i for i in query.includes if i.iterate]
        frontier = [r.pk for r in fresh]
        if not fresh or not directives:
            break
    return out
