"""Heartbeats of topic-based rest-hook Subscriptions with a `backport-heartbeat-period` (https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/components.html#heartbeats).

A Subscription that has sent nothing for its period gets a `heartbeat` notification queued (its
`beat_at` is pushed back one period by every successful send). The deliverer calls `queue_due` at
each look; claiming `beat_at` with one UPDATE keeps two processes from queueing the same heartbeat.
Streaming channels beat on the connection instead (api/subscription_routes.py).
"""

from __future__ import annotations

from sqlalchemy import select, update

from ..instant import now_us
from ..store.sql import Store
from . import handshake, tables

_S = tables.subscription


def queue_due(store: Store) -> int:
    """Queue a heartbeat for every Subscription whose period passed without a send."""
    now = now_us()
    queued = 0
    due_now = (
        select(_S.c.id, _S.c.heartbeat_seconds)
        .where(
            _S.c.heartbeat_seconds.is_not(None),
            _S.c.channel == "rest-hook",
            _S.c.status == "active",
            _S.c.beat_at <= now,
        )
        .distinct()
    )
    with store.read() as tx:  # the common case, nothing due, takes no write lock
        if tx.conn.execute(due_now.limit(1)).first() is None:
            return 0
    with store.write() as tx:
        due = list(tx.conn.execute(due_now))
        for sub_id, seconds in due:
            claimed = tx.conn.execute(
                update(_S)
                .where(_S.c.id == sub_id, _S.c.beat_at <= now)
                .values(beat_at=now + int(seconds) * 1_000_000)
            ).rowcount
            if claimed:
                handshake.queue(tx.conn, sub_id, "heartbeat")
                queued += 1
    return queued
