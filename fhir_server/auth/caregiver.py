"""Caregivers: a user whose fhirUser is a RelatedPerson, or a Person linked to several, opens the record of
a person they care for (https://hl7.org/fhir/R4/relatedperson.html, https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html#fhiruser).

`dependants` lists the Patients this user may open: the `patient` of each RelatedPerson that is the
user's fhirUser, or a `link.target` of the user's Person, counted only while the link is active
(`RelatedPerson.active` is not false and its `period` includes now) and the Patient exists. At login
the user picks one of them (the patient picker shows only these); `patient/` scopes then apply to
that patient, and the token's `patient` and `fhirUser` say who is who. A token whose link has
since ended stops working (`still_linked`, checked with each request).
"""

from __future__ import annotations

from typing import Any

import orjson

from .. import instant
from ..store.repository import UnitOfWork
from ..store.sql import Store

CAREGIVER_TYPES = ("RelatedPerson", "Person")


def is_caregiver(fhir_user: str | None) -> bool:
    return (fhir_user or "").partition("/")[0] in CAREGIVER_TYPES


def dependants(tx: UnitOfWork, fhir_user: str | None, now_us: int | None = None) -> dict[str, str]:
    """The Patients this caregiver may open, each with the RelatedPerson that links them."""
    if not is_caregiver(fhir_user):
        return {}
    assert fhir_user is not None
    now = instant.now_us() if now_us is None else now_us
    kind, _, ident = fhir_user.partition("/")
    related = [ident] if kind == "RelatedPerson" else _linked(tx, ident)
    out: dict[str, str] = {}
    for rid in related:
        patient = _active_patient(tx, rid, now)
        if patient is not None:
            patient_row = tx.current("Patient", patient)
            if patient_row is not None and not patient_row.deleted:
                out.setdefault(patient, f"RelatedPerson/{rid}")
    return out


def still_linked(store: Store, fhir_user: str | None, patient: str | None) -> bool:
    """A caregiver's token is for a patient they are still actively linked to (others: True)."""
    if not is_caregiver(fhir_user) or patient is None:
        return True
    with store.read() as tx:
        return patient in dependants(tx, fhir_user)


def _linked(tx: UnitOfWork, person_id: str) -> list[str]:
    resource = _load(tx, "Person", person_id)
    if resource is None or resource.get("active") is False:
        return []
    out = []
    for link in resource.get("link") or []:
        target = (link.get("target") or {}).get("reference") if isinstance(link, dict) else None
        if isinstance(target, str) and target.startswith("RelatedPerson/"):
            out.append(target.removeprefix("RelatedPerson/"))
    return out


def _active_patient(tx: UnitOfWork, related_id: str, now: int) -> str | None:
    resource = _load(tx, "RelatedPerson", related_id)
    if resource is None or resource.get("active") is False:
        return None
    period = resource.get("period") or {}
    try:
        if period.get("start") and instant.parse(period["start"]) > now:
            return None
        if period.get("end") and _end_of(period["end"]) < now:
            return None
    except (ValueError, TypeError):
        return None  # a period we cannot read is not a current link
    target = (resource.get("patient") or {}).get("reference")
    if isinstance(target, str) and target.startswith("Patient/") and "/" not in target[8:]:
        return target[8:]
    return None


def _end_of(value: str) -> int:
    """The last microsecond a period's `end` covers (a date: the whole day)."""
    start = instant.parse(value)
    return start + (86_400_000_000 - 1 if len(value) == 10 else 0)


def _load(tx: UnitOfWork, res_type: str, res_id: str) -> dict[str, Any] | None:
    if not (0 < len(res_id) <= 64):
        return None
    stored = tx.current(res_type, res_id)
    if stored is None or stored.deleted:
        return None
    loaded = orjson.loads(stored.content)
    return loaded if isinstance(loaded, dict) else None
