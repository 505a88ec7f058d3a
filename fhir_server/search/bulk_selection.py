"""Which resources an export selects (https://hl7.org/fhir/uv/bulkdata/STU2/export.html#query-parameters).

SQL conditions on the resource table, per resource type:

* Patient and Group exports: the Patient compartment (https://hl7.org/fhir/R4/compartmentdefinition-patient.html)
  of all patients, of the Group's members (Group.member.entity), or of the POSTed `patient` list; a
  resource is in a patient's compartment when one of its compartment reference parameters
  (`idx_reference`) points at the patient. Provenance also follows its `target`: every Provenance
  whose target is a resource in the compartment is exported.
* `includeAssociatedData=RelevantProvenanceResources`: the Provenance of every exported resource.
* `_typeFilter`: OR of the searches given for the type; scopes: OR of the caller's grants (each a
  patient compartment and/or a granular query). Both are evaluated by the search planner against
  the current search index.
* `_since`: resources whose last change is after it (deleted ones included, for the `deleted` file).

A Group changed after the export's transactionTime counts with its members of then
(`members_then`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
from sqlalchemy import ColumnElement, FromClause, and_, exists, false, literal, not_, or_, select, true

from ..references import local_target
from ..store import snapshot
from ..store import tables as t
from ..store.sql import Store
from . import compartment as comp
from . import plan
from . import query as search_query
from .parameters import param_id

R = t.resource
Patients = list[str] | Any | None  # ids, a SELECT of ids, or None for every patient


def _local(ref: Any, base: str) -> ColumnElement[bool]:
    return or_(ref.c.url.is_(None), ref.c.url == literal(f"{base}/Patient/") + ref.c.target_id)


def _patient_refs(ids: list[int], patients: Patients, base: str) -> Any:
    ref = t.idx_reference.alias()
    conds = [ref.c.param_id.in_(ids), ref.c.target_type == "Patient", _local(ref, base)]
    if patients is not None:
        conds.append(ref.c.target_id.in_(patients))
    return select(ref.c.resource_pk).where(*conds)


def in_compartment(res: FromClause, resource_type: str, patients: Patients, base: str) -> ColumnElement[bool]:
    """`res` (a resource table or alias) of this type is in the compartment of `patients`."""
    if resource_type == "Patient":
        return true() if patients is None else res.c.res_id.in_(patients)
    ids = [param_id(resource_type, code) for code in comp.patient_compartment_params(resource_type)]
    if not ids:
        return false()
    return res.c.pk.in_(_patient_refs(ids, patients, base))


def _in_any_compartment(
    res: FromClause, types: list[str], patients: Patients, base: str
) -> ColumnElement[bool]:
    ids = [param_id(rt, code) for rt in types for code in comp.patient_compartment_params(rt)]
    alternatives: list[ColumnElement[bool]] = []
    if "Patient" in types:
        alternatives.append(and_(res.c.res_type == "Patient", in_compartment(res, "Patient", patients, base)))
    if ids:
        alternatives.append(res.c.pk.in_(_patient_refs(ids, patients, base)))
    return or_(*alternatives) if alternatives else false()


@dataclass(frozen=True)
class Snapshot:
    """The export's store and transactionTime: conditions on *other* resources (a Provenance's
    targets) see those resources as they were then."""

    store: Store
    transaction_time: int


def _provenance_of(
    target: FromClause,
    targets: Callable[[FromClause, list[str]], ColumnElement[bool]] | None,
    res_types: list[str],
    snap: Snapshot,
) -> ColumnElement[bool]:
    """Provenance whose `target` was, at the snapshot, a live resource of `res_types` meeting
    `targets(table, types)`: unchanged since (`target`, an alias of the resource table, as it is now) or
    changed since and meeting them then (`snapshot.matched_then_pks`)."""
    ref = t.idx_reference.alias()
    unchanged: list[ColumnElement[bool]] = [
        target.c.last_updated <= snap.transaction_time,
        target.c.deleted == false(),
    ]
    if targets is not None:
        unchanged.append(targets(target, res_types))
    then = [
        pk
        for rt in res_types
        for pk in snapshot.matched_then_pks(
            snap.store, rt, [targets(R, [rt])] if targets is not None else [], snap.transaction_time
        )
    ]
    state = or_(and_(*unchanged), target.c.pk.in_(then)) if then else and_(*unchanged)
    conds: list[ColumnElement[bool]] = [
        target.c.res_type == ref.c.target_type,
        target.c.res_id == ref.c.target_id,
        target.c.res_type.in_(res_types),
        state,
    ]
    linked = select(ref.c.resource_pk).where(
        ref.c.param_id == param_id("Provenance", "target"), exists().where(*conds)
    )
    return R.c.pk.in_(linked)


def patients_of(params: dict[str, Any], base: str) -> Patients:
    """The patients whose compartments a Patient or Group export covers (None: all patients)."""
    if params.get("patients") is not None:
        return list(params["patients"])
    group = params.get("group")
    if group:
        ref = t.idx_reference.alias()
        return select(ref.c.target_id).where(
            ref.c.resource_pk == group["pk"],
            ref.c.param_id == param_id("Group", "member"),
            ref.c.target_type == "Patient",
            _local(ref, base),
        )
    return None


def members_then(store: Store, params: dict[str, Any], transaction_time: int, base: str) -> dict[str, Any]:
    """`params` of a Group export whose Group changed after `transaction_time`, with the Patients of its
    `member.entity` as they were then (`patients`); other params unchanged."""
    group = params.get("group")
    if not group or params.get("patients") is not None:
        return params
    then = snapshot.changed_version(store, int(group["pk"]), transaction_time)
    if then is None:
        return params
    members: list[str] = []
    if not then.deleted:
        for member in orjson.loads(then.content).get("member") or []:
            reference = ((member or {}).get("entity") or {}).get("reference")
            target = local_target(reference, base) if isinstance(reference, str) else None
            if target is not None and target[0] == "Patient":
                members.append(target[1])
    return {**params, "patients": list(dict.fromkeys(members))}


def _search_where(resource_type: str, pairs: list[tuple[str, str]], base: str) -> ColumnElement[bool]:
    q = search_query.parse(resource_type, pairs, lenient=True)
    where = plan.build(q, base_url=base).whereclause
    return where if where is not None else true()


def _grant(resource_type: str, grant: dict[str, Any], base: str) -> ColumnElement[bool]:
    conds: list[ColumnElement[bool]] = []
    if grant.get("compartment"):
        kind, _, ident = str(grant["compartment"]).partition("/")
        conds.append(in_compartment(R, resource_type, [ident], base) if kind == "Patient" else false())
    if grant.get("query"):
        conds.append(_search_where(resource_type, [(k, v) for k, v in grant["query"]], base))
    return and_(*conds) if conds else true()


def conditions(
    params: dict[str, Any], resource_type: str, base: str, snap: Snapshot
) -> list[ColumnElement[bool]]:
    """The conditions (ANDed) on `tables.resource` rows of `resource_type` for this export."""
    out: list[ColumnElement[bool]] = []
    level = params["level"]
    types = [rt for rt in params["types"] if rt != "Provenance"]
    target = t.resource.alias("target")
    if resource_type == "Provenance" and params.get("provenance") == "relevant":
        if level == "system":
            out.append(_provenance_of(target, None, types, snap))
        else:
            patients = patients_of(params, base)
            out.append(
                _provenance_of(
                    target, lambda table, rts: _in_any_compartment(table, rts, patients, base), types, snap
                )
            )
    elif level != "system":
        patients = patients_of(params, base)
        own = in_compartment(R, resource_type, patients, base)
        if resource_type == "Provenance":
            others = [rt for rt in comp.compartment_types() if rt != "Provenance"]
            own = or_(
                own,
                _provenance_of(
                    target, lambda table, rts: _in_any_compartment(table, rts, patients, base), others, snap
                ),
            )
        out.append(own)
    filters = params.get("type_filters", {}).get(resource_type)
    if filters:
        out.append(
            or_(*(_search_where(resource_type, parse_qsl(f, keep_blank_values=True), base) for f in filters))
        )
    grants = params.get("grants", {}).get(resource_type)
    if grants:
        allowed = [g for g in grants if not g.get("withheld")]
        out.append(or_(*(_grant(resource_type, g, base) for g in allowed)))
        withheld = [
            g for g in grants if g.get("withheld")
        ]  # a patient's Consent denies (auth/privacy_consent.py)
        if withheld:
            out.append(not_(or_(*(_grant(resource_type, g, base) for g in withheld))))
    return out
