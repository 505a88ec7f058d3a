"""update, update-as-create and conditional update: PUT (https://hl7.org/fhir/R4/http.html#update)."""

from __future__ import annotations

from typing import Any

from ..auth import enforce
from ..errors import Invalid, PreconditionFailed
from ..store.sql import Stored, Tx, VersionConflict
from ..subscriptions import admission
from .conditional import single
from .context import Context
from .read import check_type
from .write import WriteResult, checked_body, checked_id, profiles_for

_RETRIES = 5


def update(
    ctx: Context,
    tx: Tx,
    res_type: str,
    res_id: str,
    body: Any,
    *,
    if_match: int | None = None,
    location: str = "",
) -> WriteResult:
    """Write a new version (200), or create the resource with the client's id (201).

    A deleted resource is revived by an update. If-Match names the version the client read; a
    mismatch is 412. Without If-Match, a concurrent writer makes us re-read and retry, so no update
    is ever lost and versions stay gapless.
    """
    enforce.refuse_server_written(ctx.principal, res_type)
    resource = checked_body(
        body, res_type, location=location, settings=ctx.settings, stored=profiles_for(ctx, tx, res_type)
    )
    checked_id(resource, res_id)
    if res_type == admission.TYPE:  # the owner's own: its checks instead of compartments
        admitted = admission.admit(tx, ctx.principal, ctx.settings, resource, tx.current(res_type, res_id))
        result = _write(tx, res_type, res_id, resource, if_match)
        admitted.record(tx, result.stored)
        return result
    enforce.check_write(tx, ctx.principal, "update", res_type, tx.current(res_type, res_id))
    result = _write(tx, res_type, res_id, resource, if_match)
    enforce.check_written(tx, ctx.principal, "update", result.stored)
    return result


def _write(tx: Tx, res_type: str, res_id: str, resource: dict[str, Any], if_match: int | None) -> WriteResult:
    for _ in range(_RETRIES):
        prev = tx.current(res_type, res_id)
        if prev is None:
            if if_match is not None:
                raise PreconditionFailed(f"{res_type}/{res_id} does not exist; If-Match cannot hold")
            return WriteResult(tx.create(resource, res_id, method="PUT"), 201, created=True)
        _check_version(prev, if_match)
        try:
            created = prev.deleted
            return WriteResult(tx.update(prev, resource), 201 if created else 200, created=created)
        except VersionConflict:
            if if_match is not None:
                raise PreconditionFailed(
                    f"{res_type}/{res_id} is no longer at version {if_match}", f"{res_type}.meta.versionId"
                ) from None
    raise VersionConflict(f"{res_type}/{res_id} keeps changing; retry the update")


def _check_version(prev: Stored, if_match: int | None) -> None:
    if if_match is not None and (prev.deleted or prev.version != if_match):
        raise PreconditionFailed(
            f"{prev.res_type}/{prev.res_id} is at version {prev.version}, not {if_match}",
            f"{prev.res_type}.meta.versionId",
        )


def conditional_update(
    ctx: Context,
    tx: Tx,
    res_type: str,
    criteria: str,
    body: Any,
    *,
    if_match: int | None = None,
    location: str = "",
) -> WriteResult:
    """PUT [type]?criteria: no match creates, one match updates it, several are 412."""
    check_type(res_type)
    enforce.refuse_server_written(ctx.principal, res_type)
    if res_type == admission.TYPE:
        raise Invalid("A Subscription is updated by its id, not conditionally", location or res_type)
    resource = checked_body(
        body, res_type, location=location, settings=ctx.settings, stored=profiles_for(ctx, tx, res_type)
    )
    found = single(ctx, tx, res_type, criteria, "Conditional update")
    if found is None:
        if if_match is not None:
            raise PreconditionFailed("Conditional update with If-Match matched nothing")
        rid = resource.get("id")
        if rid is not None:
            enforce.check_write(tx, ctx.principal, "update", res_type, tx.current(res_type, rid))
            result = _write(tx, res_type, rid, resource, None)
        else:
            enforce.check_write(tx, ctx.principal, "update", res_type, None)
            result = WriteResult(tx.create(resource, method="PUT"), 201, created=True)
        enforce.check_written(tx, ctx.principal, "update", result.stored)
        return result
    if "id" in resource and resource["id"] != found.res_id:
        raise Invalid(
            f"The resource id '{resource['id']}' differs from the matched {res_type}/{found.res_id}",
            f"{res_type}.id",
        )
    enforce.check_write(tx, ctx.principal, "update", res_type, found)
    result = _write(tx, res_type, found.res_id, resource, if_match)
    enforce.check_written(tx, ctx.principal, "update", result.stored)
    return result
