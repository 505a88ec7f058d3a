"""Admitting a Subscription when it is created, updated or deleted (https://hl7.org/fhir/R4/subscription.html#states).

The client writes a Subscription with `status` requested (or off); the server checks it and sets
`status` and `error` itself: a client may not set active or error. A topic-based rest-hook
Subscription stays `requested` until its handshake is answered (handshake.py); the others are
active at once. Checked, all as 400 at the
element: the criteria (a valid search of one type, `criteria.py`, or a topic canonical with its
filters, `filter_criteria.py`), the channel type (rest-hook,
websocket, or Server-Sent Events declared with the backport channel-type extension), the payload (none, or JSON), each `header`
("Name: value") and a rest-hook endpoint (`endpoint.py`). The owner (client, kind of token, user, patient context and
scopes) must be able to search and read the criteria's type (each of a topic's types), else 403; only the same identity may
update or delete it later. The Subscription is then recorded in the `subscription` table, in the
same transaction as the resource.

A Subscription is the owner's own, like the status Task of its asynchronous requests: patient
compartments do not apply to it (it is in none), so a patient app with `patient/Subscription.c`
may create one; what it delivers stays within the owner's grants.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, delete, insert, select, update

from ..auth import async_status, enforce
from ..auth.principal import Principal
from ..errors import Forbidden, Invalid
from ..settings import Settings
from ..store.sql import Stored, Tx
from . import criteria as criteria_
from . import endpoint, filter_criteria, handshake, tables
from .owner import Owner

TYPE = "Subscription"
CHANNELS = ("rest-hook", "websocket")  # and "sse", declared with the backport channel-type extension
# A channel type R4 does not define (https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/StructureDefinition-backport-channel-type.html):
# channel.type holds an R4 code (say "message") and `_type` this extension with the custom Coding.
CUSTOM_CHANNEL = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-channel-type"
SSE = ("urn:fhir-server:subscription-channel-type", "sse")  # Server-Sent Events (docs/subscriptions.md)
PAYLOADS = ("application/fhir+json", "application/json")
CLIENT_STATUSES = ("requested", "off")
_HEADER = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\r\n\x00]*")
_S = tables.subscription


@dataclass(frozen=True)
class Admitted:
    """A checked Subscription, ready to be recorded once stored."""

    owner: Owner
    parts: tuple[criteria_.Criteria, ...]  # one search per resource type (a criteria: one)
    channel: str
    endpoint: str | None
    headers: tuple[str, ...]
    payload: str | None
    status: str
    topic: filter_criteria.TopicCriteria | None = None

    def record(self, tx: Tx, stored: Stored) -> None:
        """Keep the Subscription's rows (one per resource type) in step with its stored version."""
        topic = self.topic
        values: dict[str, Any] = {
            "status": self.status,
            "channel": self.channel,
            "endpoint": self.endpoint,
            "headers": orjson.dumps(list(self.headers)).decode(),
            "payload": self.payload,
            "failures": 0,
            "retry_at": 0,
            "error": None,
            "topic": topic.topic.url if topic else None,
            "content": topic.content if topic else None,
            "heartbeat_seconds": topic.heartbeat if topic else None,
            "timeout_seconds": topic.timeout if topic else None,
            "max_count": topic.max_count if topic else None,
            **self.owner.columns(),
        }
        if topic is not None and topic.heartbeat:
            values["beat_at"] = stored.last_updated + topic.heartbeat * 1_000_000
        before = tx.conn.execute(select(_S).where(_S.c.id == stored.res_id)).first()
        kept = {"events": 0, "lease_until": 0, "since": stored.last_updated, "beat_at": 0}
        if before is not None:
            kept = {k: getattr(before, k) for k in kept}
        kept = {k: v for k, v in kept.items() if k not in values}
        types = [p.res_type for p in self.parts]
        tx.conn.execute(delete(_S).where(_S.c.id == stored.res_id, _S.c.criteria_type.not_in(types)))
        for part in self.parts:
            criteria = {
                "criteria": part.text,
                "key_code": part.key_code,
                "key_patient": part.key_patient,
            }
            found = tx.conn.execute(
                update(_S)
                .where(_S.c.id == stored.res_id, _S.c.criteria_type == part.res_type)
                .values(**values, **criteria)
            ).rowcount
            if not found:
                tx.conn.execute(
                    insert(_S).values(
                        id=stored.res_id, criteria_type=part.res_type, **kept, **values, **criteria
                    )
                )
        if self.status == "requested":  # a topic rest-hook channel to (re)check: active once it answers
            handshake.requeue(tx.conn, stored.res_id)


def admit(
    tx: Tx, principal: Principal | None, settings: Settings, resource: dict[str, Any], prev: Stored | None
) -> Admitted:
    """Check a Subscription about to be written (over `prev`, its current version, if any) and set
    its server-owned elements in `resource`; 400 / 403 otherwise."""
    enforce.access(
        principal, "update" if prev is not None and not prev.deleted else "create", TYPE
    )  # 403 without a scope to write Subscriptions
    owner = Owner.of(principal)
    if prev is not None and not prev.deleted:
        check_owner(tx.conn, principal, prev.res_id, "update")
    status = _status(resource, prev)
    channel = resource.get("channel")
    if not isinstance(channel, dict):
        raise Invalid("A Subscription needs a channel", "Subscription.channel")
    topic = None
    if filter_criteria.is_topic(resource.get("criteria")):
        topic = filter_criteria.parse(resource, channel)
        parts = topic.parts
    else:
        parts = (criteria_.parse(resource.get("criteria")),)
    for part in parts:
        _check_reach(principal, part, tx.base)
    kind = _channel_type(channel)
    if kind not in (*CHANNELS, "sse"):
        raise Invalid(
            f"The channel type '{kind}' is not supported here (supported: rest-hook, websocket, and sse as {SSE[0]}|{SSE[1]} in the {CUSTOM_CHANNEL} extension)",
            "Subscription.channel.type",
        )
    url = channel.get("endpoint")
    if kind == "rest-hook":
        if not isinstance(url, str):
            raise Invalid("A rest-hook channel needs an endpoint", endpoint.WHERE)
        endpoint.check(url, settings)
    payload = channel.get("payload")
    if payload is not None and (
        not isinstance(payload, str) or payload.split(";")[0].strip() not in PAYLOADS
    ):
        raise Invalid(
            f"The payload '{str(payload)[:64]}' is not supported (supported: none, {', '.join(PAYLOADS)})",
            "Subscription.channel.payload",
        )
    headers = channel.get("header") or []
    for n, header in enumerate(headers):
        if not isinstance(header, str) or not _HEADER.fullmatch(header):
            raise Invalid("A channel header must be 'Name: value'", f"Subscription.channel.header[{n}]")
    active = "off" if status == "off" else "active"
    if (
        active == "active"
        and topic is not None
        and kind == "rest-hook"
        and handshake.needed(tx.conn, prev, topic.topic.url, url)
    ):
        active = "requested"
    resource["status"] = active
    resource.pop("error", None)
    return Admitted(
        owner, parts, kind, url if kind == "rest-hook" else None, tuple(headers), payload, active, topic
    )


def _channel_type(channel: dict[str, Any]) -> Any:
    """The channel type: a custom one from the backport extension on `channel.type`, else the code."""
    extension = channel.get("_type")
    for ext in extension.get("extension", []) if isinstance(extension, dict) else []:
        if isinstance(ext, dict) and ext.get("url") == CUSTOM_CHANNEL:
            coding = ext.get("valueCoding") or {}
            if (coding.get("system"), coding.get("code")) == SSE:
                return "sse"
            return f"{coding.get('system')}|{coding.get('code')}"
    return channel.get("type")


def _status(resource: dict[str, Any], prev: Stored | None) -> str:
    """The status a client may send: requested or off, or (an update) the one it has now."""
    status = resource.get("status")
    if status in CLIENT_STATUSES:
        return str(status)
    if prev is not None and not prev.deleted and status == prev.resource().get("status"):
        return "requested"
    raise Invalid(
        f"The server sets a Subscription's status: send 'requested' (or 'off'), not '{status}'",
        "Subscription.status",
    )


def _check_reach(principal: Principal | None, parsed: criteria_.Criteria, base: str) -> None:
    """403 unless the owner may search and read what the criteria covers."""
    try:
        enforce.search_restriction(principal, criteria_.search(parsed), base)
        enforce.access(principal, "read", parsed.res_type)
    except Forbidden as exc:
        raise Forbidden(
            f"The criteria (on {parsed.res_type}) covers data this token may not read: {exc.message}",
            WHERE_CRITERIA,
        ) from None


WHERE_CRITERIA = criteria_.WHERE


def check_owner(conn: Connection, principal: Principal | None, sub_id: str, interaction: str) -> None:
    """Only the identity that created a Subscription may change it (the server may, principal None)."""
    if principal is None:
        return
    row = conn.execute(select(_S).where(_S.c.id == sub_id)).first()
    if row is not None and not Owner.of_row(row).same_identity(Owner.of(principal)):
        raise Forbidden(
            f"Subscription/{sub_id} belongs to another client or user; it may not {interaction} it"
        )


def forget(tx: Tx, principal: Principal | None, sub_id: str) -> None:
    """A Subscription is deleted: only its owner may; it stops, its queue is dropped."""
    enforce.access(principal, "delete", TYPE)
    check_owner(tx.conn, principal, sub_id, "delete")
    tx.conn.execute(delete(_S).where(_S.c.id == sub_id))
    D = tables.subscription_delivery
    tx.conn.execute(delete(D).where(D.c.sub_id == sub_id, D.c.state == "pending"))
    M = tables.subscription_match
    tx.conn.execute(delete(M).where(M.c.sub_id == sub_id))


def owned_by(conn: Connection, principal: Principal, res_type: str, res_id: str) -> bool:
    """`auth/async_status` test: the owner may read its own Subscription, whatever its compartments."""
    if res_type != TYPE:
        return False
    row = conn.execute(select(_S).where(_S.c.id == res_id)).first()
    return row is not None and Owner.of_row(row).same_identity(Owner.of(principal))


def register() -> None:
    """At start-up: owners read their Subscriptions."""
    async_status.register(owned_by)
