"""Topic-based notifications: a `history` Bundle whose first entry is the SubscriptionStatus as an R4 Parameters (https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/notifications.html).

The status (profile backport-subscription-status-r4) names the Subscription, its topic and status,
the notification `type` (handshake, heartbeat, event-notification, query-status, query-event),
`events-since-subscription-start` and one `notification-event` per event (its gap-free number,
when it was queued and, unless the content is `empty`, the `focus`). With `id-only` each event's
resource is an entry with only its fullUrl and request; with `full-resource` the entry carries the
version the event was about (a delete: no resource).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from ..instant import now_us

MEDIA_TYPE = "application/fhir+json"
PROFILE = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"
_METHOD = {"create": "POST", "update": "PUT", "patch": "PATCH", "delete": "DELETE"}
_STATUS = {"create": "201", "update": "200", "patch": "200", "delete": "204"}


@dataclass(frozen=True)
class Event:
    number: int
    queued_at: int  # µs
    interaction: str
    res_type: str
    res_id: str
    content: bytes | None  # the version (full-resource, not a delete)


def instant(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status(
    sub: Any, base: str, kind: str, since_start: int, events: Sequence[Event] = (), content: str | None = None
) -> dict[str, Any]:
    """The SubscriptionStatus of a notification, as an R4 Parameters."""
    content = content or sub.content or "empty"
    params: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": f"{base}/Subscription/{sub.id}"}},
        *([{"name": "topic", "valueCanonical": sub.topic}] if sub.topic else []),
        {"name": "status", "valueCode": sub.status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(since_start)},
    ]
    for e in events:
        parts: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(e.number)},
            {"name": "timestamp", "valueInstant": instant(e.queued_at)},
        ]
        if content != "empty":
            parts.append(
                {"name": "focus", "valueReference": {"reference": f"{base}/{e.res_type}/{e.res_id}"}}
            )
        params.append({"name": "notification-event", "part": parts})
    if sub.error and sub.status == "error":
        params.append({"name": "error", "valueCodeableConcept": {"text": str(sub.error)[:1000]}})
    return {"resourceType": "Parameters", "meta": {"profile": [PROFILE]}, "parameter": params}


def bundle(
    sub: Any, base: str, kind: str, since_start: int, events: Sequence[Event] = (), content: str | None = None
) -> dict[str, Any]:
    """The notification Bundle (type history) for `events` (none for a handshake or heartbeat)."""
    content = content or sub.content or "empty"
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": status(sub, base, kind, since_start, events, content),
            "request": {"method": "GET", "url": f"Subscription/{sub.id}/$status"},
            "response": {"status": "200"},
        }
    ]
    if content != "empty":
        for e in events:
            entry: dict[str, Any] = {
                "fullUrl": f"{base}/{e.res_type}/{e.res_id}",
                "request": {
                    "method": _METHOD.get(e.interaction, "PUT"),
                    "url": e.res_type if e.interaction == "create" else f"{e.res_type}/{e.res_id}",
                },
                "response": {"status": _STATUS.get(e.interaction, "200")},
            }
            if content == "full-resource" and e.content is not None:
                entry["resource"] = orjson.Fragment(e.content)
            entries.append(entry)
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "history",
        "timestamp": instant(now_us()),
        "entry": entries,
    }


def encode(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)
