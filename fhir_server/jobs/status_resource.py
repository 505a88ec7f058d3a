"""A job's status resource (an `$ingest` Task) belongs to the job's requester (https://hl7.org/fhir/R4/async.html).

Job kinds name the type of their status resource (`JobHandler.status_type`); its id is the job id.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from . import handlers, tables
from .requester import Requester

_J = tables.job.c


def requested_by(conn: Connection, principal: Any, res_type: str, res_id: str) -> bool:
    """`res_type/res_id` is the status resource of a job this principal requested (`requester.py`)."""
    kinds = handlers.with_status(res_type)
    if not kinds:
        return False
    row = conn.execute(select(tables.job).where(_J.id == res_id, _J.kind.in_(kinds))).first()
    return row is not None and Requester.of_row(row) == Requester.of(principal)
