"""Who asked for an asynchronous job, and who may follow it up (https://hl7.org/fhir/uv/bulkdata/STU2/export.html#bulk-data-status-request).

Bulk Data only requires a status, delete or file request to come from the client that made the
kick-off; one client id is shared by every user of a public app (and by an operator's tokens), so a
job here belongs to the whole identity of its requester: client id, kind of token (patient, user,
system), user (`sub`, `fhirUser`) and patient context. Any fresh token of that same identity may
follow the job up; anyone else is told the job does not exist. Jobs made inside the server (no
principal) have no requester and cannot be followed up over HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_

from . import tables

_J = tables.job.c


@dataclass(frozen=True)
class Requester:
    """The identity a job belongs to (all None: made by the server itself)."""

    client_id: str | None = None
    kind: str | None = None
    subject: str | None = None
    fhir_user: str | None = None
    patient: str | None = None

    @classmethod
    def of(cls, principal: Any) -> Requester:
        """The requester behind a principal (None: the server itself)."""
        if principal is None:
            return cls()
        return cls(
            client_id=principal.client_id,
            kind=principal.kind,
            subject=principal.subject,
            fhir_user=principal.fhir_user,
            patient=principal.patient,
        )

    @classmethod
    def of_row(cls, row: Any) -> Requester:
        """The requester recorded on a job row (or a `Job`)."""
        return cls(
            client_id=row.client_id,
            kind=row.requester_kind,
            subject=row.requester_subject,
            fhir_user=row.requester_fhir_user,
            patient=row.requester_patient,
        )

    def columns(self) -> dict[str, str | None]:
        """The job row's values for this requester."""
        return {
            "client_id": self.client_id,
            "requester_kind": self.kind,
            "requester_subject": self.subject,
            "requester_fhir_user": self.fhir_user,
            "requester_patient": self.patient,
        }

    def condition(self) -> ColumnElement[bool]:
        """SQL: the job row belongs to this requester (NULL matches NULL)."""
        return and_(
            *(_J[name].is_(None) if v is None else _J[name] == v for name, v in self.columns().items())
        )

    def lock_key(self) -> str:
        """A name for this requester's advisory lock (counting its active jobs)."""
        return "job-requester:" + "|".join(v or "" for v in self.columns().values())
