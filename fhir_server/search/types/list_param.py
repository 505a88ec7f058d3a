"""`_list`: the resources a List's entries refer to (https://hl7.org/fhir/R4/search.html#list).

`_list=42` (or `List/42`) matches the current resources that List/42's `entry.item` references point
to (its `item` index rows: local references, or absolute ones under the server base). The List
itself must be readable by the caller: auth/enforce.py ANDs `readable` of each List into the
search (`list_items`, with the List's grants). Functional lists (`$current-allergies`, ...) are not
served: a value starting with `$` is a 400. `:missing` is refused: "in any List at all" would tell a
patient that another patient's List names their resource.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, select

from fhir_server.search.parameters import param_id
from fhir_server.search.types.base import Parsing, SearchType, SqlContext
from fhir_server.search.values import fail, unescape
from fhir_server.store import tables

ITEM = param_id("List", "item")


@dataclass(frozen=True)
class ListValue:
    """The id of a List."""

    id: str


def parse_list(text: str, param: str) -> ListValue:
    """`id` or `List/id`."""
    value = unescape(text, param)
    if value.startswith("List/"):
        value = value[5:]
    if value.startswith("$"):
        fail(param, f"functional list {value!r} is not supported")
    if not value or "/" in value or len(value) > 64:
        fail(param, f"{text!r} is not the id of a List")
    return ListValue(value)


def list_items(
    ctx: SqlContext, ids: Sequence[str], readable: ColumnElement[bool] | None = None
) -> Select[Any]:
    """The pk of the current resources the entries of the Lists `ids` refer to; with `readable` (a
    condition on `tables.resource`, the caller's grants on List), only of the Lists meeting it."""
    lists = select(tables.resource.c.pk).where(
        tables.resource.c.res_type == "List",
        tables.resource.c.res_id.in_(list(ids)),
        tables.resource.c.deleted == false(),
    )
    if readable is not None:
        lists = lists.where(readable)
    lists = lists.correlate(None)  # its own `resource`, never the searched one
    ref = tables.idx_reference.alias()
    item = tables.resource.alias()
    on = and_(item.c.res_type == ref.c.target_type, item.c.res_id == ref.c.target_id)
    return (
        select(item.c.pk)
        .select_from(ref.join(item, on))
        .where(ref.c.param_id == ITEM, ref.c.resource_pk.in_(lists), ctx.local(ref))
    )


def rows(
    ctx: SqlContext, param: Any, values: Sequence[Any], registry: Mapping[str, SearchType]
) -> Select[Any]:
    """The resources in any of the Lists `values`."""
    return list_items(ctx, [v.id for v in values if isinstance(v, ListValue)])


def _parser(p: Parsing) -> Callable[[str], ListValue]:
    return partial(parse_list, param=p.name)


LIST = SearchType("list", frozenset(), _parser, rows=rows, selective=lambda modifier: True)
