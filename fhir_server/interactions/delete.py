"""delete and conditional delete (https://hl7.org/fhir/R4/http.html#delete)."""

from __future__ import annotations

from ..auth import enforce
from ..auth.principal import Principal
from ..store.sql import Stored, Tx, VersionConflict
from ..subscriptions import admission
from .conditional import single
from .context import Context
from .read import check_type


def delete(tx: Tx, res_type: str, res_id: str, *, principal: Principal | None = None) -> Stored | None:
    """Delete the current version; deleting what is absent or already deleted changes nothing."""
    check_type(res_type)
    enforce.refuse_server_written(principal, res_type)
    for _ in range(5):
        prev = tx.current(res_type, res_id)
        if res_type == admission.TYPE:  # the owner's own: its checks instead of compartments
            admission.forget(tx, principal, res_id)
        else:
            enforce.check_write(tx, principal, "delete", res_type, prev)
        if prev is None or prev.deleted:
            return None
        try:
            return tx.delete(prev)
        except VersionConflict:
            continue
    raise VersionConflict(f"{res_type}/{res_id} keeps changing; retry the delete")


def conditional_delete(ctx: Context, tx: Tx, res_type: str, criteria: str) -> Stored | None:
    """DELETE [type]?criteria: deletes the single match (several matches are 412)."""
    check_type(res_type)
    enforce.refuse_server_written(ctx.principal, res_type)
    found = single(ctx, tx, res_type, criteria, "Conditional delete")
    if found is None:
        return None
    return delete(tx, res_type, found.res_id, principal=ctx.principal)
