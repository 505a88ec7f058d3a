"""patch with JSON Patch (RFC 6902): PATCH [base]/[type]/[id] (https://hl7.org/fhir/R4/http.html#patch)."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from .. import input_limits
from ..auth import enforce
from ..errors import Invalid, Unprocessable
from ..store.sql import Tx
from ..subscriptions import admission
from .context import Context
from .read import read
from .update import _check_version
from .write import WriteResult, checked_body


def patch(
    ctx: Context, tx: Tx, res_type: str, res_id: str, operations: Any, *, if_match: int | None = None
) -> WriteResult:
    """Apply the operations to the current version and store the result as a new version."""
    if res_type == admission.TYPE:  # its server-owned status is checked on a whole resource only
        raise Invalid("A Subscription is changed by an update (PUT), not a patch", res_type)
    if not isinstance(operations, list):
        raise Invalid("A JSON Patch document must be a JSON array of operations", "$this")
    for i, operation in enumerate(operations):
        for member in ("path", "from"):
            if isinstance(operation, dict) and member in operation:
                input_limits.check_json_pointer(operation[member], f"$this[{i}].{member}")
    try:
        patch_doc = jsonpatch.JsonPatch(operations)
    except (jsonpatch.InvalidJsonPatch, TypeError, KeyError) as exc:
        raise Invalid(f"Invalid JSON Patch: {exc}", "$this") from None
    current = read(tx, res_type, res_id)
    enforce.check_write(tx, ctx.principal, "patch", res_type, current)
    _check_version(current, if_match)
    before = current.resource()
    try:
        after = patch_doc.apply(copy.deepcopy(before))
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError) as exc:
        raise Unprocessable(f"The patch cannot be applied: {exc}", "$this") from None
    if not isinstance(after, dict) or after.get("resourceType") != res_type or after.get("id") != res_id:
        raise Unprocessable("A patch may not change the resource type or id", f"{res_type}.id")
    try:
        resource = checked_body(after, res_type, settings=ctx.settings)
    except Invalid as exc:
        raise Unprocessable(exc.message, issues=exc.issues) from None
    stored = tx.update(current, resource, method="PATCH")
    enforce.check_written(tx, ctx.principal, "patch", stored)
    return WriteResult(stored, 200)
