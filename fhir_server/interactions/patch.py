"""patch: PATCH [base]/[type]/[id] and conditional PATCH [base]/[type]?[search] (https://hl7.org/fhir/R4/http.html#patch).

The body is a JSON Patch (RFC 6902) array, or a FHIRPath Patch Parameters resource
(`fhirpath_patch.py`). Conditional patch: no match 404, one match patched, several 412.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import jsonpatch

from .. import input_limits
from ..auth import enforce
from ..errors import Invalid, NotFound, Unprocessable
from ..store.sql import Tx
from ..subscriptions import admission
from . import fhirpath_patch
from .conditional import single
from .context import Context
from .read import read
from .update import _check_version
from .write import WriteResult, checked_body, profiles_for


def patch(
    ctx: Context, tx: Tx, res_type: str, res_id: str, operations: Any, *, if_match: int | None = None
) -> WriteResult:
    """Apply the operations to the current version and store the result as a new version."""
    enforce.refuse_server_written(ctx.principal, res_type)
    if res_type == admission.TYPE:  # its server-owned status is checked on a whole resource only
        raise Invalid("A Subscription is changed by an update (PUT), not a patch", res_type)
    if fhirpath_patch.is_fhirpath_patch(operations):
        steps = fhirpath_patch.operations(operations)
        current = read(tx, res_type, res_id)
        return _store(
            ctx, tx, current, lambda before: fhirpath_patch.apply(before, res_type, steps), if_match
        )
    if not isinstance(operations, list):
        raise Invalid("A patch must be a JSON Patch array or a FHIRPath Patch Parameters resource", "$this")
    for i, operation in enumerate(operations):
        for member in ("path", "from"):
            if isinstance(operation, dict) and member in operation:
                input_limits.check_json_pointer(operation[member], f"$this[{i}].{member}")
    try:
        patch_doc = jsonpatch.JsonPatch(operations)
    except (jsonpatch.InvalidJsonPatch, TypeError, KeyError) as exc:
        raise Invalid(f"Invalid JSON Patch: {exc}", "$this") from None
    return _store(
        ctx, tx, read(tx, res_type, res_id), lambda before: _json_patch(patch_doc, before), if_match
    )


def conditional_patch(
    ctx: Context, tx: Tx, res_type: str, criteria: str, operations: Any, *, if_match: int | None = None
) -> WriteResult:
    """PATCH [type]?criteria: the one match is patched; none is 404, several 412."""
    found = single(ctx, tx, res_type, criteria, "Conditional patch")
    if found is None:
        raise NotFound(f"Conditional patch: no {res_type} matches '{criteria}'")
    return patch(ctx, tx, res_type, found.res_id, operations, if_match=if_match)


def _json_patch(patch_doc: jsonpatch.JsonPatch, before: dict[str, Any]) -> Any:
    try:
        return patch_doc.apply(copy.deepcopy(before))
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError) as exc:
        raise Unprocessable(f"The patch cannot be applied: {exc}", "$this") from None


def _store(
    ctx: Context, tx: Tx, current: Any, change: Callable[[dict[str, Any]], Any], if_match: int | None
) -> WriteResult:
    """Check access and version, apply `change` to the current content, validate and store it."""
    res_type, res_id = current.res_type, current.res_id
    enforce.check_write(tx, ctx.principal, "patch", res_type, current)
    _check_version(current, if_match)
    after = change(current.resource())
    if not isinstance(after, dict) or after.get("resourceType") != res_type or after.get("id") != res_id:
        raise Unprocessable("A patch may not change the resource type or id", f"{res_type}.id")
    try:
        resource = checked_body(
            after, res_type, settings=ctx.settings, stored=profiles_for(ctx, tx, res_type)
        )
    except Invalid as exc:
        raise Unprocessable(exc.message, issues=exc.issues) from None
    stored = tx.update(current, resource, method="PATCH")
    enforce.check_written(tx, ctx.principal, "patch", stored)
    return WriteResult(stored, 200)
