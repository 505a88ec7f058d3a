"""Subscription/$events: replay of a topic-based Subscription's recent events (https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/OperationDefinition-backport-subscription-events.html).

`GET [base]/Subscription/[id]/$events?eventsSinceNumber=&eventsUntilNumber=&content=`: a
notification Bundle (type history, status type `query-event`) of the events still kept (every
pending one, sent ones for `subscription_keep_seconds`), at most `MAX` from `eventsSinceNumber`.
The caller must be able to read the Subscription (else 404); each event is given only when both its
owner and the caller may read the version now. `content` (empty, id-only, full-resource) overrides
the Subscription's own.
"""

from __future__ import annotations

from typing import Any

from ..errors import Invalid, NotFound
from ..interactions import read
from ..interactions.context import Context
from ..store.sql import Tx
from ..subscriptions import admission, filter_criteria, notification, replay
from .parameters import OperationInput

MAX = 500
LARGEST = 2**62  # event numbers are 64-bit integers in the database


def events(ctx: Context, tx: Tx, params: OperationInput, res_id: str) -> dict[str, Any]:
    read.read(tx, admission.TYPE, res_id, principal=ctx.principal)
    sub = replay.row(tx, res_id)
    if sub is None:
        raise NotFound(f"Subscription/{res_id} is off or not active here")
    if not sub.topic:
        raise Invalid(f"Subscription/{res_id} is not topic-based: $events has nothing to replay")
    since = params.integer("eventsSinceNumber", minimum=1) or 1
    until = params.integer("eventsUntilNumber", minimum=0)
    for name, value in (("eventsSinceNumber", since), ("eventsUntilNumber", until)):
        if value is not None and value > LARGEST:
            raise Invalid(f"{name} is larger than any event number", name)
    content = params.text("content") or sub.content or "empty"
    if content not in filter_criteria.CONTENTS:
        raise Invalid(
            f"content must be one of {', '.join(filter_criteria.CONTENTS)}, not '{content[:64]}'", "content"
        )
    found = replay.events(tx, sub, ctx.principal, since, until, MAX, content)
    return notification.bundle(sub, ctx.settings.base, "query-event", int(sub.events), found, content)
