"""What `$status` and `$events` read: a Subscription's row and its recent events (https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/operations.html).

Events are the queued notifications still kept (`subscription_keep_seconds` after they were sent,
and every pending one), in event-number order; handshakes and heartbeats are not events. Each is
returned only if its owner may read it now (`delivery.readable_event`), like a delivery.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ..auth.principal import Principal
from ..store.sql import Tx
from . import notification, tables
from .delivery import readable_event, readable_version
from .owner import Owner

_S, _D = tables.subscription, tables.subscription_delivery
EVENTS = ("create", "update", "patch", "delete")


def row(tx: Tx, sub_id: str) -> Any | None:
    """The Subscription's row (one of a topic's; they agree but for criteria); None: no such Subscription."""
    return tx.conn.execute(select(_S).where(_S.c.id == sub_id).order_by(_S.c.criteria_type)).first()


def events(
    tx: Tx, sub: Any, caller: Principal | None, since: int, until: int | None, limit: int, content: str
) -> list[notification.Event]:
    """The kept events numbered `since`..`until` (at most `limit`) that the owner AND the caller may read."""
    query = (
        select(_D)
        .where(_D.c.sub_id == sub.id, _D.c.event_number >= since, _D.c.interaction.in_(EVENTS))
        .order_by(_D.c.event_number)
        .limit(limit)
    )
    if until is not None:
        query = query.where(_D.c.event_number <= until)
    owner = Owner.of_row(sub).principal()
    out = []
    for r in tx.conn.execute(query):
        if r.state == "withheld":
            continue
        event = readable_event(tx, owner, r, content)
        if event is None or (r.interaction != "delete" and not _caller_reads(tx, caller, r)):
            continue
        out.append(event)
    return out


def _caller_reads(tx: Tx, caller: Principal | None, r: Any) -> bool:
    return readable_version(tx, caller, r.res_type, r.res_id, r.version) is not None


def owned(tx: Tx, principal: Principal | None, limit: int) -> list[str]:
    """The ids of the Subscriptions `principal` owns (the server: every one)."""
    query = select(_S.c.id).distinct().order_by(_S.c.id).limit(limit)
    if principal is not None:
        for column, value in Owner.of(principal).columns().items():
            if column != "owner_scopes":
                c = _S.c[column]
                query = query.where(c.is_(None) if value is None else c == value)
    return [str(i) for i in tx.conn.execute(query).scalars()]
