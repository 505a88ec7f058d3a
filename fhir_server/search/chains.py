"""Chained parameters and `_has` (https://hl7.org/fhir/R4/search.html#chaining, #has).

A chain `subject:Patient.name=x` joins idx_reference to the target resource and tests the rest of
the chain on it; `_has:Observation:patient:code=x` looks up the references back to the resource
from the sources that match. Both nest: the inner criterion is planned by `Planner.criterion`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, and_, false, select

from fhir_server.search.query import Chain, Has
from fhir_server.search.types.base import of_params
from fhir_server.store import tables

if TYPE_CHECKING:
    from fhir_server.search.criteria import Planner

_R = tables.resource


def chain(planner: Planner, c: Chain, pk: Any) -> ColumnElement[bool]:
    """`pk` refers through `c.param` to a resource of `c.target_types` matching `c.criterion`."""
    ref = tables.idx_reference.alias()
    tgt = _R.alias()
    sub = (
        select(ref.c.resource_pk)
        .select_from(
            ref.join(tgt, and_(tgt.c.res_type == ref.c.target_type, tgt.c.res_id == ref.c.target_id))
        )
        .where(
            of_params(ref.c.param_id, c.param.ids),
            of_params(ref.c.target_type, c.target_types),
            planner.ctx.local(ref),
            tgt.c.deleted == false(),
            planner.criterion(c.criterion, tgt, c.target_types),
        )
    )
    after = planner.after_for(pk)
    if after is not None:
        sub = sub.where(after.test(ref.c.resource_pk))
    return pk.in_(sub)


def has(planner: Planner, h: Has, res: Any, types: tuple[str, ...]) -> ColumnElement[bool]:
    """`res` is referred to through `h.param` by a resource of `h.source_type` matching `h.criterion`."""
    ref = tables.idx_reference.alias()
    src = _R.alias()
    sources = select(src.c.pk).where(
        src.c.res_type == h.source_type,
        src.c.deleted == false(),
        planner.criterion(h.criterion, src, (h.source_type,)),
    )
    conds = [of_params(ref.c.param_id, h.param.ids), planner.ctx.local(ref), ref.c.resource_pk.in_(sources)]
    if len(types) == 1:
        return res.c.res_id.in_(select(ref.c.target_id).where(ref.c.target_type == types[0], *conds))
    return (
        select(ref.c.resource_pk)
        .where(ref.c.target_type == res.c.res_type, ref.c.target_id == res.c.res_id, *conds)
        .exists()
    )
