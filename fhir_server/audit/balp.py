"""AuditEvent resources in the shapes of IHE Basic Audit Log Patterns (https://profiles.ihe.net/ITI/BALP/).

RESTful interactions follow BALP Read / Query / Create / Update / Delete (type `rest`, subtype the
FHIR interaction), with the patient as an entity (`PatientRead`, `PatientQuery` ...): one AuditEvent
per patient the access touched, so each patient's entries name only their own resources. The
client is the Source Role agent, the user (fhirUser) the requestor, this server the Destination
Role agent and the observer. Logins and tokens are DICOM "User Authentication" (110114) events.
"""

from __future__ import annotations

import base64
import functools
import itertools
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

DCM = "http://dicom.nema.org/resources/ontology/DCM"
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
AUTH_EVENT = "urn:fhir-server:audit-auth-event"  # this server's codes for token issue/refresh/revoke
CLIENT_ID = "urn:fhir-server:client-id"  # identifier system of SMART client ids
USER_ID = "urn:fhir-server:user-id"  # identifier system of users at this authorization server
CONSENT_DECISION = "urn:fhir-server:consent-decision"

REST = {"system": EVENT_TYPE, "code": "rest", "display": "Restful Operation"}
USER_AUTHENTICATION = {"system": DCM, "code": "110114", "display": "User Authentication"}
# BALP action of each interaction: C create, R read, U update, D delete, E execute (search, operation)
ACTION = {
    "read": "R",
    "vread": "R",
    "history-instance": "R",
    "history-type": "R",
    "history-system": "R",
    "search-type": "E",
    "search-system": "E",
    "search-compartment": "E",
    "create": "C",
    "update": "U",
    "patch": "U",
    "delete": "D",
    "transaction": "E",
    "batch": "E",
    "operation": "E",
}
_SUBTYPE = {"search-compartment": "search-type"}  # restful-interaction has no compartment search code


@dataclass(frozen=True)
class Who:
    """The caller: anything with client_id, subject, fhir_user, patient (a Principal, a WriteContext)."""

    client_id: str | None
    subject: str | None
    fhir_user: str | None
    patient: str | None

    @classmethod
    def of(cls, caller: Any) -> Who | None:
        if caller is None:
            return None
        return cls(
            getattr(caller, "client_id", None),
            getattr(caller, "subject", None),
            getattr(caller, "fhir_user", None),
            getattr(caller, "patient", None),
        )


_PREFIX = os.urandom(8).hex()  # this process's; ids are prefix + counter: unique, no entropy per event
_COUNTER = itertools.count(1)
_COUNTER_LOCK = threading.Lock()


def new_id() -> str:
    """A new AuditEvent id (64 characters at most, [A-Za-z0-9-.])."""
    with _COUNTER_LOCK:
        n = next(_COUNTER)
    return f"{_PREFIX}-{os.getpid():x}-{n:x}"


def outcome(status: int) -> str:
    """AuditEvent.outcome: 0 success, 4 minor failure (refused: 4xx), 8 serious failure (5xx)."""
    if status < 400:
        return "0"
    return "4" if status < 500 else "8"


@functools.lru_cache(maxsize=64)
def _second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def timestamp(us: int) -> str:
    """`instant.to_fhir(us)`, the formatted second kept for the next events (the same second, mostly)."""
    seconds, micro = divmod(us, 1_000_000)
    return f"{_second(seconds)}.{micro:06d}Z"


@functools.lru_cache(maxsize=256)
def _agents_and_source(who: Who | None, base: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """`agents(who, base)` and `source(base)`, built once per caller (a frozen `Who` of strings) and
    shared by its events (nothing changes an AuditEvent once built: it is serialised and indexed as it is)."""
    return agents(who, base), source(base)


def agents(who: Who | None, base: str) -> list[dict[str, Any]]:
    """The user (requestor), the client application (Source Role ID) and this server (Destination)."""
    out: list[dict[str, Any]] = []
    if who is not None and (who.fhir_user or who.subject):
        user: dict[str, Any] = {
            "type": {
                "coding": [{"system": PARTICIPATION, "code": "IRCP", "display": "information recipient"}]
            },
            "requestor": True,
        }
        if who.fhir_user:
            user["who"] = {"reference": who.fhir_user}
        else:
            user["who"] = {"identifier": {"system": USER_ID, "value": who.subject}}
        if who.subject:
            user["altId"] = who.subject
        out.append(user)
    if who is not None and who.client_id:
        out.append(
            {
                "type": {"coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]},
                "who": {"identifier": {"system": CLIENT_ID, "value": who.client_id}},
                "requestor": not out,
            }
        )
    out.append(
        {
            "type": {"coding": [{"system": DCM, "code": "110152", "display": "Destination Role ID"}]},
            "who": {"display": base or "fhir-server"},
            "requestor": not out,
        }
    )
    return out


def source(base: str) -> dict[str, Any]:
    return {
        "observer": {"display": base or "fhir-server"},
        "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
    }


def patient_entity(patient_id: str) -> dict[str, Any]:
    return {
        "what": {"reference": f"Patient/{patient_id}"},
        "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
        "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
    }


def resource_entity(res_type: str, res_id: str) -> dict[str, Any]:
    return {
        "what": {"reference": f"{res_type}/{res_id}"},
        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
    }


def query_entity(query: str, res_type: str) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
        "query": base64.b64encode(query.encode()).decode(),
    }
    if res_type:
        entity["description"] = res_type
    return entity


def consent_entity(consent: str) -> dict[str, Any]:
    """A Consent whose deny provision withheld data from this access."""
    return {
        "what": {"reference": consent},
        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        "role": {"system": OBJECT_ROLE, "code": "13", "display": "Security Resource"},
        "detail": [{"type": "decision", "valueString": "deny"}],
    }


def audit_event(
    *,
    type_: dict[str, Any],
    subtype: dict[str, Any] | None,
    action: str,
    started_us: int,
    ended_us: int,
    status: int,
    who: Who | None,
    base: str,
    entities: Iterable[dict[str, Any]],
    description: str | None = None,
) -> dict[str, Any]:
    """One AuditEvent (R4) with a new id."""
    end = timestamp(ended_us or started_us)
    start = end if started_us == (ended_us or started_us) else timestamp(started_us)
    agent, source_ = _agents_and_source(who, base)
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": new_id(),
        "type": type_,
        "action": action,
        "period": {"start": start, "end": end},
        "recorded": end,
        "outcome": outcome(status),
        "agent": agent,
        "source": source_,
    }
    if subtype is not None:
        event["subtype"] = [subtype]
    if description:
        event["outcomeDesc"] = description
    listed = list(entities)
    if listed:
        event["entity"] = listed
    return event


def restful_subtype(interaction: str) -> dict[str, Any]:
    code = _SUBTYPE.get(interaction, interaction)
    return {"system": RESTFUL, "code": code}
