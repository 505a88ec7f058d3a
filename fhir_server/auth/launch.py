"""EHR launch contexts: the opaque `launch` values the server issues (https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#launch-app-ehr-launch).

The EHR (here: an operator through the admin API or CLI) asks for a launch with a patient, an
encounter and other context; the server hands out an unguessable `launch` value to put in the app's
launch URL. An authorization request naming a `launch` the server did not issue, or one that
expired, is refused. The stored context becomes the token response's launch context parameters.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from . import opaque_token
from .tables import launch_context

LIFETIME = 3600  # seconds a launch value may be used for
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@dataclass(frozen=True)
class LaunchContext:
    """What the app was launched with (scopes-and-launch-context.html#launch-context-arrives-with-your-access_token)."""

    patient: str | None = None
    encounter: str | None = None
    fhir_context: tuple[dict[str, Any], ...] = field(default=())
    intent: str | None = None
    need_patient_banner: bool = True

    def __post_init__(self) -> None:
        for name in ("patient", "encounter"):
            value = getattr(self, name)
            if value is not None and not _ID.fullmatch(value):
                raise ValueError(f"{name} must be a FHIR id")
        for item in self.fhir_context:
            if not isinstance(item, dict) or not any(
                k in item for k in ("reference", "canonical", "identifier")
            ):
                raise ValueError("each fhirContext item needs a reference, canonical or identifier")
            if str(item.get("reference", "")).startswith(("Patient/", "Encounter/")):
                raise ValueError("Patient and Encounter go in patient / encounter, not fhirContext")

    def as_json(self) -> dict[str, Any]:
        """The token-response parameters this context contributes."""
        out: dict[str, Any] = {"need_patient_banner": self.need_patient_banner}
        if self.patient:
            out["patient"] = self.patient
        if self.encounter:
            out["encounter"] = self.encounter
        if self.fhir_context:
            out["fhirContext"] = [dict(item) for item in self.fhir_context]
        if self.intent:
            out["intent"] = self.intent
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LaunchContext:
        return cls(
            patient=data.get("patient"),
            encounter=data.get("encounter"),
            fhir_context=tuple(data.get("fhirContext") or ()),
            intent=data.get("intent"),
            need_patient_banner=bool(data.get("need_patient_banner", True)),
        )


def issue(
    conn: Connection, context: LaunchContext, *, now: int | None = None, lifetime: int = LIFETIME
) -> str:
    """Store the context and return the new `launch` value for it."""
    at = int(time.time()) if now is None else now
    value = opaque_token.new()
    conn.execute(delete(launch_context).where(launch_context.c.expires_at < at))
    conn.execute(
        insert(launch_context).values(
            launch_hash=opaque_token.digest(value),
            context=json.dumps(context.as_json()),
            created_at=at,
            expires_at=at + lifetime,
        )
    )
    return value


def resolve(conn: Connection, launch: str, *, now: int | None = None) -> LaunchContext | None:
    """The context of a `launch` value we issued and that has not expired; else None."""
    at = int(time.time()) if now is None else now
    row = conn.execute(
        select(launch_context.c.context, launch_context.c.expires_at).where(
            launch_context.c.launch_hash == opaque_token.digest(launch)
        )
    ).first()
    if row is None or row.expires_at < at:
        return None
    return LaunchContext.from_json(json.loads(row.context))
