"""The patients a resource is about: its Patient compartment (https://hl7.org/fhir/R4/compartmentdefinition-patient.html).

A resource is in a Patient's compartment when one of its type's compartment parameters has a local
`Patient/<id>` reference row (`search/index.py`). Rather than build each parameter's rows, the
branches of their compiled expressions are run here once per type's plan: a branch that reads an
element the resource lacks is skipped, a branch `Type.element` of References (or its
`.where(resolve() is Patient)`: 87 of the 100) is read directly with `reference.index_target`
for a single Reference, and any other branch gives its elements to the reference type's `values`.
tests/audit/test_patients.py checks this against the rows of `param_tuples` over HL7's
examples and Synthea's resources.

`of_current_versions` reads the same rows from `idx_reference` for versions that are still current
(the index holds current versions only), so the audit trail need not read back and parse each
version's JSON; the rest (updated or deleted since) are left to `of_resource`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, and_, select, text

from ..fhirpath import compiler
from ..search import parameters
from ..search.compartment import patient_compartment_params
from ..search.index import NOT_INDEXED, param_tuples
from ..search.types import reference
from ..store import tables as t

# One branch of a compartment parameter: (first element it reads or None, its compiled function, its
# FHIR type, the parameter's code, whether it is `Type.element` or `Type.element.where(resolve() is
# Patient)` of References: read directly). fn None: not compiled (`param_tuples`, always run).
Branch = tuple[str | None, compiler.Fn | None, str, str, bool]


@functools.cache
def _plan(res_type: str) -> tuple[Branch, ...]:
    """The branches of the Patient compartment parameters of one type (built once per type)."""
    out: list[Branch] = []
    direct = re.compile(rf"{re.escape(res_type)}\.(\w+)(?:\.where\(resolve\(\) is Patient\))?")
    for code in patient_compartment_params(res_type):
        sp = parameters.get(res_type, code)
        if sp is None or sp.code in NOT_INDEXED or not sp.expression or sp.kind != reference.KIND:
            out.append((None, None, "", code, False))  # not the usual shape: the general path
            continue
        extractor = compiler.compile_expression(sp.expression, res_type)
        if extractor.branches is None:
            out.append((None, None, "", code, False))
            continue
        plain = direct.fullmatch(sp.expression)
        for fn, fhir_type in extractor.branches:
            key = compiler.first_key(fn)
            simple = (
                plain is not None
                and len(extractor.branches) == 1
                and fhir_type == "Reference"
                and key == plain.group(1)
            )
            out.append((key, fn, fhir_type, code, simple))
    return tuple(out)


def of_resource(resource: dict[str, Any]) -> set[str]:
    """Ids of the Patients whose compartment holds `resource` (a Patient: itself). Local references only."""
    res_type = resource.get("resourceType")
    if not isinstance(res_type, str):
        return set()
    if res_type == "Patient":
        rid = resource.get("id")
        return {rid} if isinstance(rid, str) else set()
    out: set[str] = set()
    for key, fn, fhir_type, code, simple in _plan(res_type):
        if fn is None:
            _add(out, param_tuples(resource, code).get(reference.KIND, ()))
            continue
        if simple:
            value = resource.get(key)  # type: ignore[arg-type]
            if value is None:
                continue
            ref = value.get("reference") if value.__class__ is dict and "resourceType" not in value else None
            if ref.__class__ is str:
                # one Reference: `values` gives the row of index_target(ref) alone, and a local
                # Patient reference passes `where(resolve() is Patient)` (the type before its id)
                target = reference.index_target(ref)
                if target is not None and target[0] == "Patient" and target[2] is None:
                    out.add(str(target[1]))
                continue
        elif key is not None and key not in resource:
            continue
        found = fn([resource], resource)
        if found:
            sink: dict[str, list[tuple[Any, ...]]] = {reference.KIND: [], "token": []}
            reference.values(found, fhir_type, 0, 0, sink)
            _add(out, sink[reference.KIND])
    return out


def _add(out: set[str], rows: Any) -> None:
    for row in rows:
        # (param_id, grp, target_type, target_id, url): url is None for a local reference
        if row[2] == "Patient" and row[4] is None:
            out.add(str(row[3]))


@functools.cache
def _compartment_param_ids(res_type: str) -> frozenset[int]:
    return frozenset(parameters.param_id(res_type, code) for code in patient_compartment_params(res_type))


_OF_CURRENT_POSTGRES = text(
    "SELECT v.txn, r.param_id, r.target_id FROM resource_version v"
    " JOIN resource c ON c.pk = v.resource_pk AND c.version = v.version AND NOT c.deleted"
    " LEFT JOIN idx_reference r ON r.resource_pk = v.resource_pk AND r.target_type = 'Patient'"
    " AND r.url IS NULL AND r.param_id = ANY(CAST(:params AS integer[]))"
    " WHERE v.txn = ANY(CAST(:txns AS bigint[]))"
)


def of_current_versions(conn: Connection, versions: Iterable[tuple[int, str]]) -> dict[int, set[str]]:
    """The patients of each version (`txn`, resource type) that is its resource's current one, as
    `of_resource` would find them, read from the compartment parameters' `idx_reference` rows;
    a version not current any more (updated or deleted since) is not in the result. Not for
    Patients (a Patient's own compartment is by identity, not by a reference row)."""
    wanted = dict(versions)
    params = sorted(set().union(*(_compartment_param_ids(rt) for rt in set(wanted.values()))))
    out: dict[int, set[str]] = {}
    txns = list(wanted)
    for start in range(0, len(txns), 500):
        chunk = txns[start : start + 500]
        if conn.dialect.name == "sqlite":
            v, c, r = t.resource_version.c, t.resource.c, t.idx_reference.c
            query = (
                select(v.txn, r.param_id, r.target_id)
                .join_from(
                    t.resource_version,
                    t.resource,
                    and_(c.pk == v.resource_pk, c.version == v.version, c.deleted.is_(False)),
                )
                .outerjoin(
                    t.idx_reference,
                    and_(
                        r.resource_pk == v.resource_pk,
                        r.target_type == "Patient",
                        r.url.is_(None),
                        r.param_id.in_(params),
                    ),
                )
                .where(v.txn.in_(chunk))
            )
            rows = conn.execute(query)
        else:
            rows = conn.execute(_OF_CURRENT_POSTGRES, {"txns": chunk, "params": params})
        for txn, param, target in rows:  # tuples: a Row's attributes cost more than the loop
            found = out.setdefault(int(txn), set())
            if target is not None and param in _compartment_param_ids(wanted[int(txn)]):
                found.add(str(target))
    return out
