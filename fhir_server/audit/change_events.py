"""AuditEvents of the writes, from their change events (docs/events.md, docs/audit.md).

Every stored version is a change event with its source (rest, transaction, batch, import, ingest) and
who wrote it; a batch of events becomes one AuditEvent per (source, interaction, writer, patient):
a REST write is one AuditEvent, a 1,000-entry transaction or an `$import` one per patient touched. The
AuditEvents are written in the delivery's transaction, so each write is recorded exactly once.
The trail's own AuditEvents are written by `Tx.record`, whose versions are no change events, so they
are never recorded again (nor seen by any other consumer); an AuditEvent event, should one ever be
stored otherwise, is skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from ..store import outbox
from ..store.outbox import ChangeEvent, WriteContext
from ..store.sql import Tx
from . import balp, event_index, patients

AUDIT_TYPE = "AuditEvent"
_STATUS = {"create": 201, "update": 200, "patch": 200, "delete": 204}
MAX_ENTITIES = 200  # resources named per AuditEvent; a larger group is split


def listener(base: str) -> Callable[[list[ChangeEvent], Tx], None]:
    """The change-event listener that records `events` as AuditEvents through the delivery's `tx`."""

    def record(events: list[ChangeEvent], tx: Tx) -> None:
        for event in audit_events(tx, events, base):  # no change events: never recorded again
            tx.record(event, event["id"], event_index.rows(event))

    return record


def audit_events(tx: Tx, events: list[ChangeEvent], base: str) -> list[dict[str, Any]]:
    wanted = [e for e in events if e.res_type != AUDIT_TYPE]
    if not wanted:
        return []
    # The patients of a version still current are read from its index rows; the JSON of the
    # others is read back and walked (bench/README.md "Seventeenth session").
    stored = [e for e in wanted if e.interaction != "delete" and e.res_type != "Patient"]
    indexed = patients.of_current_versions(tx.conn, [(e.position[1], e.res_type) for e in stored])
    contents = outbox.contents(tx.conn, [e.position[1] for e in stored if e.position[1] not in indexed])
    # A REST write is one AuditEvent; a Bundle's or a job's writes are grouped by patient.
    Group = tuple[WriteContext, str, str | None, int]
    groups: dict[Group, list[ChangeEvent]] = {}
    for e in wanted:
        owners = indexed.get(e.position[1])
        if owners is None:
            content = contents.get(e.position[1], b"")
            if e.interaction == "delete" and e.version > 1:
                before = tx.version(e.res_type, e.res_id, e.version - 1)
                content = before.content if before is not None else b""
            owners = _patients(content)
        owners = owners or ({e.res_id} if e.res_type == "Patient" else set())
        keys: list[str | None] = list(sorted(owners)) or [None]
        for patient in keys:
            single = e.position[1] if e.context.source == "rest" else 0
            groups.setdefault((e.context, e.interaction, patient, single), []).append(e)
    out: list[dict[str, Any]] = []
    for (context, interaction, patient, _), members in groups.items():
        for start in range(0, len(members), MAX_ENTITIES):
            chunk = members[start : start + MAX_ENTITIES]
            entities = [balp.patient_entity(patient)] if patient else []
            entities += [
                balp.resource_entity(e.res_type, e.res_id)
                for e in chunk
                if (e.res_type, e.res_id) != ("Patient", patient)
            ]
            out.append(
                balp.audit_event(
                    type_=balp.REST,
                    subtype=balp.restful_subtype(interaction),
                    action=balp.ACTION[interaction],
                    started_us=min(e.last_updated for e in chunk),
                    ended_us=max(e.last_updated for e in chunk),
                    status=_STATUS[interaction],
                    who=balp.Who.of(context),
                    base=base,
                    entities=entities,
                    description=f"{interaction} from {context.source}",
                )
            )
    return out


def _patients(content: bytes) -> set[str]:
    if not content:
        return set()
    try:
        resource = orjson.loads(content)
    except orjson.JSONDecodeError:
        return set()
    return patients.of_resource(resource) if isinstance(resource, dict) else set()
