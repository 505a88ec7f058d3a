"""create and conditional create: POST [base]/[type] (https://hl7.org/fhir/R4/http.html#create)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..auth import enforce
from ..store.sql import Stored, Tx
from ..subscriptions import admission
from .conditional import only, single
from .context import Context
from .write import WriteResult, checked_body, profiles_for


def create(
    ctx: Context,
    tx: Tx,
    res_type: str,
    body: Any,
    *,
    if_none_exist: str | None = None,
    location: str = "",
    assigned_id: str | None = None,
    matched: Sequence[Stored] | None = None,
) -> WriteResult:
    """Store a new resource with a server-assigned id (any id in the body is ignored).

    With If-None-Exist: when one resource matches, nothing is created and it is returned (200);
    more than one match is 412. `assigned_id` is the id a transaction Bundle reserved for it;
    `matched` the matches of If-None-Exist when the transaction found them already, with the
    locks held (interactions/conditional_creates.py); None: searched here.
    """
    enforce.refuse_server_written(ctx.principal, res_type)
    resource = checked_body(
        body, res_type, location=location, settings=ctx.settings, stored=profiles_for(ctx, tx, res_type)
    )
    enforce.check_write(tx, ctx.principal, "create", res_type, None)
    if if_none_exist:
        if matched is None:
            existing = single(ctx, tx, res_type, if_none_exist, "Conditional create")
        else:
            existing = only(matched, res_type, if_none_exist, "Conditional create")
        if existing is not None:
            return WriteResult(existing, 200, created=False)
    resource.pop("id", None)
    if res_type == admission.TYPE:  # the owner's own: its checks instead of compartments
        admitted = admission.admit(tx, ctx.principal, ctx.settings, resource, None)
        stored = tx.create(resource, assigned_id)
        admitted.record(tx, stored)
        return WriteResult(stored, 201, created=True)
    stored = tx.create(resource, assigned_id)
    enforce.check_written(tx, ctx.principal, "create", stored)
    return WriteResult(stored, 201, created=True)
