"""Subscription/$status: the status of Subscriptions (https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/OperationDefinition-backport-subscription-status.html).

`GET [base]/Subscription/[id]/$status`, or `[base]/Subscription/$status?id=...` (repeatable; none:
every Subscription the caller owns), optionally `status=...`: a searchset Bundle of
SubscriptionStatus Parameters (type `query-status`). A Subscription the caller may not read is
404 when named, left out otherwise.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..errors import FhirError, NotFound
from ..interactions import read
from ..interactions.context import Context
from ..search.bundle import bundle
from ..store.sql import Tx
from ..subscriptions import admission, notification, replay
from .parameters import OperationInput

MAX = 1000


def status(ctx: Context, tx: Tx, params: OperationInput, res_id: str | None = None) -> dict[str, Any]:
    named = [res_id] if res_id else [_id(v) for v in params.values.get("id", ())]
    wanted = {str(v) for v in params.values.get("status", ())}
    ids = named or replay.owned(tx, ctx.principal, MAX)
    entries = []
    for sub_id in ids[:MAX]:
        body = _status(ctx, tx, sub_id, bool(named))
        if body is not None and (not wanted or _value(body, "status") in wanted):
            entries.append(
                {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": body, "search": {"mode": "match"}}
            )
    return bundle("searchset", entries, [], len(entries))


def _id(value: Any) -> str:
    """An `id` parameter: an id, or a Reference to the Subscription (POST)."""
    if isinstance(value, dict):
        value = value.get("reference", "")
    return str(value).rstrip("/").rsplit("/", 1)[-1]


def _value(parameters: dict[str, Any], name: str) -> Any:
    return next((p.get("valueCode") for p in parameters["parameter"] if p["name"] == name), None)


def _status(ctx: Context, tx: Tx, sub_id: str, named: bool) -> dict[str, Any] | None:
    try:
        read.read(tx, admission.TYPE, sub_id, principal=ctx.principal)
        sub = replay.row(tx, sub_id)
        if sub is None:
            raise NotFound(f"Subscription/{sub_id} is off or not active here")
    except FhirError:
        if named:
            raise
        return None
    return notification.status(sub, ctx.settings.base, "query-status", int(sub.events))
