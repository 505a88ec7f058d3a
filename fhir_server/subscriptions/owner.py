"""Whose a Subscription is: the identity and scopes of the token that wrote it (https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html).

A Subscription belongs to the client, kind of token, user (`sub`, `fhirUser`) and patient context
that created it, like an asynchronous job (jobs/requester.py). The scopes of that token are kept so
that matching and every delivery run under them: a notification never carries more than its owner
could read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..auth import scopes
from ..auth.principal import Principal


@dataclass(frozen=True)
class Owner:
    """The owner's identity (all None: created by the server, no principal)."""

    client_id: str | None = None
    kind: str | None = None
    subject: str | None = None
    fhir_user: str | None = None
    patient: str | None = None
    scopes: str | None = None

    @classmethod
    def of(cls, principal: Principal | None) -> Owner:
        if principal is None:
            return cls()
        return cls(
            principal.client_id,
            principal.kind,
            principal.subject,
            principal.fhir_user,
            principal.patient,
            principal.scopes.to_string(),
        )

    @classmethod
    def of_row(cls, row: Any) -> Owner:
        return cls(
            row.owner_client,
            row.owner_kind,
            row.owner_subject,
            row.owner_fhir_user,
            row.owner_patient,
            row.owner_scopes,
        )

    def columns(self) -> dict[str, str | None]:
        return {
            "owner_client": self.client_id,
            "owner_kind": self.kind,
            "owner_subject": self.subject,
            "owner_fhir_user": self.fhir_user,
            "owner_patient": self.patient,
            "owner_scopes": self.scopes,
        }

    def same_identity(self, other: Owner) -> bool:
        """The same client, kind of token, user and patient context (scopes may differ)."""
        return (self.client_id, self.kind, self.subject, self.fhir_user, self.patient) == (
            other.client_id,
            other.kind,
            other.subject,
            other.fhir_user,
            other.patient,
        )

    def principal(self) -> Principal | None:
        """The principal matching and delivery run as (None: the server, unrestricted)."""
        if self.client_id is None or self.kind is None:
            return None
        return Principal(
            client_id=self.client_id,
            kind=self.kind,  # type: ignore[arg-type]
            scopes=scopes.parse(self.scopes or ""),
            subject=self.subject,
            fhir_user=self.fhir_user,
            patient=self.patient,
        )
