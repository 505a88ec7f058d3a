"""The Patients a Group lists in `Group.member.entity` (https://hl7.org/fhir/R4/group.html), read from the reference index.

A Group `$export` (https://hl7.org/fhir/uv/bulkdata/STU2/export.html#endpoint---group-of-patients)
exports the compartments of these patients; its `patient` parameter may only name members.
"""

from __future__ import annotations

from sqlalchemy import select

from . import tables as t
from .sql import Tx


def patient_ids(tx: Tx, group_pk: int, member_param: int, base: str) -> set[str]:
    """The ids of the Patients the Group (row `group_pk`) lists under its `member` search parameter
    (`member_param`, its param_id): local references, or absolute ones to this server (`base`)."""
    ref = t.idx_reference.c
    rows = tx.conn.execute(
        select(ref.target_id, ref.url).where(
            ref.resource_pk == group_pk,
            ref.param_id == member_param,
            ref.target_type == "Patient",
        )
    ).all()
    return {row.target_id for row in rows if row.url is None or row.url == f"{base}/Patient/{row.target_id}"}
