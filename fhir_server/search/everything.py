"""The statements behind Patient/$everything (https://hl7.org/fhir/R4/patient-operation-everything.html).

The result is the Patient compartment of one or more patients (https://hl7.org/fhir/R4/compartmentdefinition-patient.html)
followed by the resources those members reference, each once. Both parts are paged by surrogate key
(`pk`), the compartment first. `start`/`end` test the resource's care date: the first search parameter of
`CARE_DATE` the type has; a member without a care-date value (the Patient, a Device) is always kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, false, or_, select, tuple_, union

from fhir_server.search import compartment, parameters
from fhir_server.search.types.base import SqlContext
from fhir_server.store import tables

_R = tables.resource
# The search parameter that dates the care a resource records, in order of preference.
CARE_DATE = (
    "date",
    "onset-date",
    "authoredon",
    "effective-time",
    "started",
    "created",
    "period",
    "occurrence",
)


@dataclass(frozen=True)
class Filters:
    """The operation's filters: `_type`, `_since` (µs, inclusive), `start`/`end` (inclusive µs range)."""

    types: tuple[str, ...] = ()
    since: int | None = None
    start: int | None = None
    end: int | None = None


def care_date_param(res_type: str) -> str | None:
    """The code of the care-date search parameter of `res_type` (None: the type has none)."""
    for code in CARE_DATE:
        p = parameters.get(res_type, code)
        if p is not None and p.type == "date":
            return code
    return None


def members(patients: Sequence[str], ctx: SqlContext) -> ColumnElement[bool]:
    """A condition on `resource`: the row is in the compartment of one of the patients (ids)."""
    ids = [
        parameters.param_id(t, code)
        for t in parameters.resource_types()
        for code in compartment.patient_compartment_params(t)
    ]
    ref = tables.idx_reference.alias()
    own = tables.resource.alias()
    owner = select(own.c.pk).where(own.c.res_type == "Patient", own.c.res_id.in_(list(patients)))
    linked = select(ref.c.resource_pk).where(
        ref.c.param_id.in_(ids),
        ref.c.target_type == "Patient",
        ref.c.target_id.in_(list(patients)),
        ctx.local(ref),
    )
    # one IN over a UNION, not `IN (...) OR owner`: an OR made PostgreSQL walk every resource by pk
    return _R.c.pk.in_(union(linked, owner))


def patients(condition: ColumnElement[bool] | None) -> Select[Any]:
    """The ids of the current Patients meeting `condition` (a condition on `resource`; None: all)."""
    stmt = select(_R.c.res_id).where(_R.c.res_type == "Patient", _R.c.deleted == false())
    return stmt if condition is None else stmt.where(condition)


def _filtered(f: Filters) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = [_R.c.deleted == false()]
    if f.types:
        conds.append(_R.c.res_type.in_(f.types))
    if f.since is not None:
        conds.append(_R.c.last_updated >= f.since)
    return conds


def _in_care_range(f: Filters, types: Iterable[str]) -> ColumnElement[bool] | None:
    """Not dated entirely outside [start, end]: no care-date row, or one overlapping the range."""
    if f.start is None and f.end is None:
        return None
    ids = [parameters.param_id(t, code) for t in types if (code := care_date_param(t)) is not None]
    if not ids:
        return None
    d = tables.idx_date.alias()
    dated = exists().where(d.c.resource_pk == _R.c.pk, d.c.param_id.in_(ids))
    inside = [d.c.resource_pk == _R.c.pk, d.c.param_id.in_(ids)]
    if f.start is not None:
        inside.append(d.c.high >= f.start)
    if f.end is not None:
        inside.append(d.c.low <= f.end)
    return or_(~dated, exists().where(*inside))


def compartment_page(
    patients: Sequence[str], f: Filters, ctx: SqlContext, after: int, limit: int | None
) -> Select[Any]:
    """(pk, content) of the compartment members passing the filters, pk > after, in pk order."""
    conds = [members(patients, ctx), *_filtered(f), _R.c.pk > after]
    care = _in_care_range(f, f.types or parameters.resource_types())
    if care is not None:
        conds.append(care)
    stmt = select(_R.c.pk, _R.c.content).where(*conds).order_by(_R.c.pk)
    return stmt if limit is None else stmt.limit(limit)


def referenced_page(
    targets: Iterable[tuple[str, str]], exclude: Iterable[int], f: Filters, after: int, limit: int | None
) -> Select[Any]:
    """(pk, content) of the given (type, id) targets passing `_type`/`_since`, other than `exclude`."""
    keys = sorted(set(targets))
    conds = [
        tuple_(_R.c.res_type, _R.c.res_id).in_(keys) if keys else false(),
        *_filtered(f),
        _R.c.pk > after,
    ]
    skip = sorted(set(exclude))
    if skip:
        conds.append(_R.c.pk.not_in(skip))
    stmt = select(_R.c.pk, _R.c.content).where(*conds).order_by(_R.c.pk)
    return stmt if limit is None else stmt.limit(limit)
