"""A patient-context write stays in that patient's compartment alone (https://hl7.org/fhir/R4/compartmentdefinition-patient.html).

A resource is in the compartment of every Patient that one of its compartment parameters (e.g.
Observation `subject`, `performer`) refers to, and a Patient is in its own. A write under a grant
confined to Patient/A must not put a resource into, or touch a resource in, any other patient's
compartment: otherwise A could write into B's record (an Observation with `performer` = Patient/B
shows up in B's compartment, where B could then edit or delete a record about A).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, false, literal, not_, or_, select

from ..search.compartment import patient_compartment_params
from ..search.parameters import param_id
from ..store import tables

_R = tables.resource


def in_another_patients_compartment(ident: str, res_type: str, base: str) -> ColumnElement[bool]:
    """The `tables.resource` row (of `res_type`) is in the compartment of a Patient other than `ident`."""
    if res_type == "Patient":
        itself: ColumnElement[bool] = _R.c.res_id != ident
    else:
        itself = false()
    ids = [param_id(res_type, code) for code in patient_compartment_params(res_type)]
    if not ids:
        return itself
    ref = tables.idx_reference.alias()
    local: ColumnElement[bool] = ref.c.url.is_(None)
    if base:
        local = or_(local, ref.c.url == literal(base + "/") + ref.c.target_type + "/" + ref.c.target_id)
    others = select(ref.c.resource_pk).where(
        ref.c.resource_pk == _R.c.pk,
        ref.c.param_id.in_(ids),
        ref.c.target_type == "Patient",
        ref.c.target_id != ident,
        local,
    )
    return or_(itself, others.exists())


def only_in(compartment: tuple[str, str] | None, res_type: str, base: str) -> ColumnElement[bool] | None:
    """The condition that keeps a write under `compartment` out of every other patient's (None: no
    compartment, nothing to add)."""
    if compartment is None or compartment[0] != "Patient":
        return None
    return not_(in_another_patients_compartment(compartment[1], res_type, base))
