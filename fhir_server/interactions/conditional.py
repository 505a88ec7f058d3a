"""Conditional interactions: finding the resources that match search criteria in a write transaction.

https://hl7.org/fhir/R4/http.html#ccreate, #cond-update, #cdelete.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import parse_qsl

from ..errors import Invalid, PreconditionFailed
from ..store.sql import Stored, Tx
from .context import Context


def matches(ctx: Context, tx: Tx, res_type: str, criteria: str, *, limit: int = 2) -> list[Stored]:
    """Current resources of `res_type` matching `criteria` (a search query string), at most `limit`.

    Takes a lock on (type, criteria) first, so concurrent conditional writes with the same criteria
    run one after the other and cannot both create.
    """
    from .search import match_pks

    params = parse_qsl(criteria.lstrip("?"), keep_blank_values=True)
    if not params:
        raise Invalid("Conditional request without search criteria", "criteria")
    ctx.store.lock(tx, lock_key(res_type, criteria))
    tx.flush(check_references=False)  # references are checked when the transaction ends
    return tx.current_by_pks(match_pks(ctx, tx, res_type, params, limit))


def lock_key(res_type: str, criteria: str) -> str:
    """The lock `matches` takes for these criteria; a transaction takes it up front (Store.lock_all)."""
    return f"{res_type}?{criteria}"


def single(ctx: Context, tx: Tx, res_type: str, criteria: str, what: str) -> Stored | None:
    """Zero or one match; 412 when the criteria are not selective enough."""
    return only(matches(ctx, tx, res_type, criteria), res_type, criteria, what)


def only(found: Sequence[Stored], res_type: str, criteria: str, what: str) -> Stored | None:
    """The one match, None for none; 412 for several."""
    if len(found) > 1:
        raise PreconditionFailed(f"{what}: the criteria '{criteria}' match more than one {res_type}")
    return found[0] if found else None
