"""Notifications read by a connected client: the R4 websocket channel and this server's Server-Sent Events channel (https://hl7.org/fhir/R4/subscription.html#2.46.7.2, https://html.spec.whatwg.org/multipage/server-sent-events.html).

Streaming channels are not pushed by the `Deliverer`: the connection itself reads its
Subscription's queue (`subscription_delivery`) in event-number order, so any API process can serve
it, whichever process matched the events. Each connection keeps its own cursor: a websocket starts
at the oldest notification not yet sent; an EventSource that reconnects with `Last-Event-ID` starts
after that event (nothing lost while it was away, nothing twice). Every notification is read AS
THE OWNER at the moment it is sent (`enforce.check_version`); one the owner may not read is skipped.
Only the Subscription's owner may bind to it (else it is "not known", like a read). A topic's
Server-Sent Events are its notification Bundles (notification.py): a handshake when the stream
opens, one Bundle per event (`id` its event number), a heartbeat Bundle each heartbeat period.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import func, select, update

from ..auth import enforce
from ..auth.principal import Principal
from ..errors import Forbidden, Invalid, NotFound
from ..store.sql import Store
from . import delivery, notification, tables
from .owner import Owner

_S, _D = tables.subscription, tables.subscription_delivery
BATCH = 100
# Bumped whenever a matcher batch of this process queued notifications: connections look then.
_generation = [0]
_changed = threading.Condition()


def bump() -> None:
    with _changed:
        _generation[0] += 1
        _changed.notify_all()


def generation() -> int:
    return _generation[0]


def wait_change(seen: int, timeout: float) -> int:
    """Block (in a worker thread) until the generation moves past `seen` or `timeout` passes."""
    with _changed:
        _changed.wait_for(lambda: _generation[0] != seen, timeout)
        return _generation[0]


@dataclass(frozen=True)
class Notification:
    event_number: int
    interaction: str
    focus: str  # "Type/id"
    resource: bytes | None  # the version, when the channel has a payload
    bundle: bytes | None = None  # a topic's notification Bundle (notification.py)


@dataclass
class Binding:
    """A connection bound to one Subscription; `cursor`: the last event number it was given."""

    sub_id: str
    channel: str
    payload: str | None
    owner: Owner
    cursor: int
    topic: str | None = None
    heartbeat: float | None = None  # seconds (a topic's backport-heartbeat-period)


def bind(store: Store, principal: Principal | None, sub_id: str, channel: str, after: int | None) -> Binding:
    """Bind a connection to a Subscription of this channel; 404 unless the caller owns it."""
    with store.read() as tx:
        row = tx.conn.execute(select(_S).where(_S.c.id == sub_id)).first()
        if row is None or (
            principal is not None and not Owner.of(principal).same_identity(Owner.of_row(row))
        ):
            raise NotFound(f"Subscription/{sub_id} is not known")
        if row.channel != channel:
            raise Invalid(f"Subscription/{sub_id} has channel type {row.channel}, not {channel}")
        if after is None:
            oldest = tx.conn.execute(
                select(func.min(_D.c.event_number)).where(_D.c.sub_id == sub_id, _D.c.state == "pending")
            ).scalar()
            after = int(oldest) - 1 if oldest is not None else int(row.events)
    return Binding(
        sub_id,
        channel,
        row.payload,
        Owner.of_row(row),
        after,
        row.topic,
        float(row.heartbeat_seconds) if row.heartbeat_seconds else None,
    )


def take(store: Store, binding: Binding) -> list[Notification]:
    """The notifications after the binding's cursor (at most BATCH), readable by the owner; the
    cursor moves past them and they are marked sent. An empty list: nothing new."""
    principal = binding.owner.principal()
    out: list[Notification] = []
    with store.read() as tx:
        sub = tx.conn.execute(select(_S).where(_S.c.id == binding.sub_id)).first()
        if sub is None:
            raise NotFound(f"Subscription/{binding.sub_id} is not known")
        rows = list(
            tx.conn.execute(
                select(_D)
                .where(_D.c.sub_id == binding.sub_id, _D.c.event_number > binding.cursor)
                .order_by(_D.c.event_number)
                .limit(BATCH)
            )
        )
        for row in rows:
            binding.cursor = int(row.event_number)
            if row.state == "withheld" or row.interaction in ("handshake", "heartbeat"):
                continue
            if sub.topic:
                event = delivery.readable_event(tx, principal, row, sub.content)
                if event is not None:
                    bundle = notification.bundle(sub, store.base, "event-notification", event.number, [event])
                    focus = f"{row.res_type}/{row.res_id}"
                    out.append(
                        Notification(event.number, row.interaction, focus, None, notification.encode(bundle))
                    )
                continue
            content: bytes | None = None
            if row.interaction != "delete":
                version = tx.version(row.res_type, row.res_id, row.version)
                if version is None:
                    continue
                try:
                    enforce.check_version(tx, principal, version)
                except (NotFound, Forbidden):
                    continue
                content = version.content if binding.payload else None
            out.append(
                Notification(int(row.event_number), row.interaction, f"{row.res_type}/{row.res_id}", content)
            )
    pending = [r.pk for r in rows if r.state == "pending"]
    if pending:
        with store.write() as tx:
            tx.conn.execute(update(_D).where(_D.c.pk.in_(pending)).values(state="sent"))
    return out


def status_event(store: Store, binding: Binding, kind: str) -> bytes:
    """A topic's handshake or heartbeat as a Server-Sent Event (no `id`: it is no event)."""
    with store.read() as tx:
        sub = tx.conn.execute(select(_S).where(_S.c.id == binding.sub_id)).first()
        if sub is None:
            raise NotFound(f"Subscription/{binding.sub_id} is not known")
        since = int(sub.events)
    bundle = notification.encode(notification.bundle(sub, store.base, kind, since))
    return b"event: %s\ndata: %s\n\n" % (kind.encode(), bundle)


def sse_event(sub_id: str, n: Notification) -> bytes:
    """One Server-Sent Event: `id` the event number (EventSource resends it as Last-Event-ID)."""
    if n.bundle is not None:
        return b"id: %d\nevent: notification\ndata: %s\n\n" % (n.event_number, n.bundle)
    data: dict[str, Any] = {
        "subscription": f"Subscription/{sub_id}",
        "eventNumber": n.event_number,
        "interaction": n.interaction,
        "focus": n.focus,
    }
    body = orjson.dumps(data)
    if n.resource is not None:
        body = body[:-1] + b',"resource":' + n.resource + b"}"
    return b"id: %d\nevent: notification\ndata: %s\n\n" % (n.event_number, body)
