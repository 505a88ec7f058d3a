"""The handshake of a topic-based rest-hook Subscription, which gates `active` (https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/components.html#handshake).

A new topic-based rest-hook Subscription (or one switched on again, given another topic or
endpoint, or changed while not active) is stored `requested` and a handshake is queued: a
`subscription-notification` Bundle whose status `type` is `handshake` (status `requested`, as in
the IG's R4 handshake example). It is not an event and is not counted. While `requested` the
deliverer sends nothing but it; events that happen meanwhile are queued behind it.
* The receiver answers 2xx: the server writes the Subscription `active` and sends what is queued.
* It fails (connection refused, timeout, non-2xx): the Subscription is written `error` at once,
  with the reason in `error`; the handshake is retried with the usual backoff, and its first
  success makes the Subscription `active` and delivers the queued events in order.
Heartbeats (heartbeat.py) are queued with `queue(..., "heartbeat")`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, insert, select

from ..instant import now_us
from . import tables

_S, _D = tables.subscription, tables.subscription_delivery


def needed(conn: Connection, prev: Any, topic_url: str, endpoint: str | None) -> bool:
    """Whether a topic rest-hook Subscription about to be written must shake hands again before it
    is active: it is new, or not active now, or its topic or endpoint changes."""
    if prev is None or prev.deleted:
        return True
    row = conn.execute(select(_S.c.status, _S.c.topic, _S.c.endpoint).where(_S.c.id == prev.res_id)).first()
    return row is None or row.status != "active" or row.topic != topic_url or row.endpoint != endpoint


def requeue(conn: Connection, sub_id: str) -> None:
    """Queue a fresh handshake, dropping one still pending (a Subscription shakes hands once)."""
    conn.execute(
        delete(_D).where(_D.c.sub_id == sub_id, _D.c.state == "pending", _D.c.interaction == "handshake")
    )
    queue(conn, sub_id)


def queue(conn: Connection, sub_id: str, kind: str = "handshake") -> None:
    """Queue a handshake (or heartbeat) notification behind what the Subscription has queued so far."""
    events = conn.execute(select(_S.c.events).where(_S.c.id == sub_id)).scalar() or 0
    conn.execute(
        insert(_D).values(
            sub_id=sub_id,
            event_number=int(events),
            res_type="Subscription",
            res_id=sub_id,
            version=0,
            interaction=kind,
            queued_at=now_us(),
            state="pending",
        )
    )
