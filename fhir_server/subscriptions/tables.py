"""The tables of Subscriptions: one row per active Subscription, its queued notifications and what it matched (https://hl7.org/fhir/R4/subscription.html).

`subscription` mirrors the current Subscription resource with what the server keeps to itself: the
owner (client, kind of token, user, patient context and the scopes of the token that wrote it),
the parsed criteria with its index keys (type, and code / patient where the criteria names one),
the delivery state (failures, next retry, lease of the deliverer holding it) and the count of
events queued so far. `subscription_delivery` is the per-subscription queue, numbered gap-free.
`subscription_match` remembers which resources a subscription last matched, so a delete is
notified to the subscriptions the resource was in. A topic-based Subscription (filter_criteria.py)
has one `subscription` row per resource type of its topic; a queued row's `interaction` may also
be `handshake` or `heartbeat` (rest-hook only; not counted in `events`). `status` is also
`requested` while a topic rest-hook Subscription waits for its handshake (handshake.py). Times are microseconds since the epoch.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from ..store.tables import metadata

subscription = Table(
    "subscription",
    metadata,
    Column("id", String(64), primary_key=True),  # the Subscription's id
    Column("status", String(16), nullable=False),  # active | error | off
    # one row per resource type: a criteria has one, a topic one per type it has events on
    # (the rows of one id share every other column but criteria and its keys)
    Column("criteria_type", String(64), primary_key=True),
    Column("criteria", Text, nullable=False),  # the query after '?'
    Column("key_code", String(255), nullable=True),  # a single `code=` value of the criteria
    Column("key_patient", String(64), nullable=True),  # a single patient/subject id of the criteria
    Column("channel", String(32), nullable=False),  # rest-hook | websocket | sse
    Column("endpoint", Text, nullable=True),
    Column("headers", Text, nullable=False, default="[]"),  # JSON list of "Name: value"
    Column("payload", String(64), nullable=True),  # None: notify without the resource
    Column("owner_client", String(255), nullable=True),
    Column("owner_kind", String(16), nullable=True),
    Column("owner_subject", String(255), nullable=True),
    Column("owner_fhir_user", String(255), nullable=True),
    Column("owner_patient", String(64), nullable=True),
    Column("owner_scopes", Text, nullable=True),  # None: written by the server (no principal)
    Column("events", BigInteger, nullable=False, default=0),  # events queued so far
    Column("since", BigInteger, nullable=False, default=0),  # created at (µs): older events are not its
    Column("failures", Integer, nullable=False, default=0),  # consecutive failed attempts
    Column("retry_at", BigInteger, nullable=False, default=0),  # no attempt before this
    Column("lease_until", BigInteger, nullable=False, default=0),  # a deliverer holds it until then
    Column("error", Text, nullable=True),
    Column("topic", Text, nullable=True),  # a topic's canonical URL (None: a criteria Subscription)
    Column("content", String(16), nullable=True),  # topic: empty | id-only | full-resource
    Column("heartbeat_seconds", Integer, nullable=True),  # topic: backport-heartbeat-period
    Column("timeout_seconds", Integer, nullable=True),  # topic: backport-timeout
    Column("beat_at", BigInteger, nullable=False, default=0),  # next heartbeat due (µs)
    Column("max_count", Integer, nullable=True),  # topic: backport-max-count (None: one event a notification)
)
Index("ix_subscription_type_code", subscription.c.criteria_type, subscription.c.key_code)
Index("ix_subscription_type_patient", subscription.c.criteria_type, subscription.c.key_patient)

subscription_delivery = Table(
    "subscription_delivery",
    metadata,
    Column("pk", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("sub_id", String(64), nullable=False),
    Column("event_number", BigInteger, nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("interaction", String(16), nullable=False),
    Column("queued_at", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),  # pending | sent | withheld
    Column("sent_at", BigInteger, nullable=True),
)
Index(
    "ix_subscription_delivery_queue",
    subscription_delivery.c.sub_id,
    subscription_delivery.c.state,
    subscription_delivery.c.event_number,
)

# the Subscriptions with something to send, found without scanning every Subscription
Index("ix_subscription_delivery_pending", subscription_delivery.c.state, subscription_delivery.c.sub_id)

subscription_match = Table(
    "subscription_match",
    metadata,
    Column("sub_id", String(64), primary_key=True),
    Column("res_type", String(64), primary_key=True),
    Column("res_id", String(64), primary_key=True),
)
Index("ix_subscription_match_resource", subscription_match.c.res_type, subscription_match.c.res_id)
