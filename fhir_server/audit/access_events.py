"""The AuditEvents of one request (BALP Read, Query, Create ..., and User Authentication; docs/audit.md).

Successful creates, updates, patches and deletes are recorded from their change events
(`change_events.py`), which also cover transaction entries, `$import` and `$ingest`; a refused or
failed write, and every other access, is recorded here from the request.
"""

from __future__ import annotations

from typing import Any

import orjson

from . import balp, patients
from .access import Access

WRITES = frozenset({"create", "update", "patch", "delete"})
# Requests about the server rather than the data: not audited (public, and no patient data)
UNAUDITED = frozenset({"health", "metrics", "openapi", "discovery", "capabilities", "other"})
_INSTANCE = frozenset({"read", "vread", "update", "patch", "delete", "history-instance"})
_LOGIN = {"system": balp.DCM, "code": "110122", "display": "Login"}


def audit_events(access: Access, base: str) -> list[dict[str, Any]]:
    """What to record for `access` (often one AuditEvent, one per patient touched, none for a probe)."""
    if access.event is not None:
        return [_authentication(access, base)]
    name = access.interaction
    if name in UNAUDITED or (name == "auth"):
        return []
    if name in WRITES and access.status < 400:
        return []  # recorded from its change events
    if name not in balp.ACTION:  # the bulk status/file endpoints, admin: recorded as operations
        name = "operation"
    who = balp.Who.of(access.caller)
    by_patient, unattached = _touched(access)
    if who is not None and who.patient:
        by_patient.setdefault(who.patient, set())
    common: list[dict[str, Any]] = []
    if access.query is not None and (name.startswith("search") or name == "operation"):
        common.append(balp.query_entity(access.query, access.res_type))
    common += [balp.consent_entity(c) for c in access.consent]
    description = f"HTTP {access.status} {access.method} {_what(access)}"

    def event(entities: list[dict[str, Any]]) -> dict[str, Any]:
        return balp.audit_event(
            type_=balp.REST,
            subtype=balp.restful_subtype(name),
            action=balp.ACTION[name],
            started_us=access.started_us,
            ended_us=access.ended_us,
            status=access.status,
            who=who,
            base=base,
            entities=entities + common,
            description=description,
        )

    out = [
        event(
            [
                balp.patient_entity(p),
                *(balp.resource_entity(t, i) for t, i in sorted(keys) if (t, i) != ("Patient", p)),
            ]
        )
        for p, keys in sorted(by_patient.items())
    ]
    if unattached or not out:
        out.append(event([balp.resource_entity(t, i) for t, i in sorted(unattached)]))
    return out


def _touched(access: Access) -> tuple[dict[str, set[tuple[str, str]]], set[tuple[str, str]]]:
    """The resources the request returned (or named, when it returned none), by patient."""
    by_patient: dict[str, set[tuple[str, str]]] = {}
    unattached: set[tuple[str, str]] = set()
    for content in access.contents:
        try:
            resource = orjson.loads(content)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(resource, dict):
            continue
        key = (str(resource.get("resourceType")), str(resource.get("id")))
        owners = patients.of_resource(resource)
        for patient in owners:
            by_patient.setdefault(patient, set()).add(key)
        if not owners:
            unattached.add(key)
    if not access.contents:
        named = _named(access)
        if named is not None:
            if named[0] == "Patient":
                by_patient.setdefault(named[1], set()).add(named)
            else:
                unattached.add(named)
    return by_patient, unattached


def _named(access: Access) -> tuple[str, str] | None:
    """The instance in the path of an instance-level interaction or operation."""
    parts = access.path.strip("/").split("/")
    if len(parts) < 2 or not access.res_type or parts[0] != access.res_type:
        return None
    if access.interaction in _INSTANCE or (access.interaction == "operation" and len(parts) >= 3):
        return parts[0], parts[1]
    return None


def _what(access: Access) -> str:
    """The interaction and type, or the operation's name: never an id or a search value."""
    if access.interaction == "operation" or access.interaction not in balp.ACTION:
        last = access.path.rstrip("/").rsplit("/", 1)[-1]
        return last if last.startswith("$") else (access.interaction or "request")
    return f"{access.interaction} {access.res_type}".strip()


def _authentication(access: Access, base: str) -> dict[str, Any]:
    kind = access.event or ""
    subtype = _LOGIN if kind == "login" else {"system": balp.AUTH_EVENT, "code": kind}
    who = balp.Who(access.event_client, access.event_user, None, None)
    status = (
        access.status
        if access.event_failed and access.status >= 400
        else (401 if access.event_failed else 200)
    )
    detail = f"{kind} {access.event_detail}".strip() if access.event_detail else kind
    return balp.audit_event(
        type_=balp.USER_AUTHENTICATION,
        subtype=subtype,
        action="E",
        started_us=access.started_us,
        ended_us=access.ended_us,
        status=status,
        who=who,
        base=base,
        entities=[],
        description=f"{detail}: {'failed' if access.event_failed else 'succeeded'}",
    )
