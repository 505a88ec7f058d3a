"""The handshake of a topic-based rest-hook Subscription, queued when it is created (https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/components.html#handshake).

It is the first notification the deliverer sends (before event 1; it is not an event and is not
counted): a `subscription-notification` Bundle whose status `type` is `handshake`. A handshake that
fails is retried like any notification, and the Subscription goes to `error` like after any failure.
"""

from __future__ import annotations

from sqlalchemy import Connection, insert, select

from ..instant import now_us
from . import tables

_S, _D = tables.subscription, tables.subscription_delivery


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
