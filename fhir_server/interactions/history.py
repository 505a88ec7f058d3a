"""history for an instance, a type and the whole system (https://hl7.org/fhir/R4/http.html#history)."""

from __future__ import annotations

from typing import Any

from .. import instant
from ..audit import access as audit
from ..auth import enforce
from ..errors import Invalid, NotFound
from ..search.bundle import bundle, history_entry, link, page_url
from ..store.sql import Tx
from .context import Context
from .read import check_type

_ALLOWED = {"_since", "_at", "_count", "_page_before", "_format", "_pretty", "_list", "_summary", "_elements"}


def history(
    ctx: Context,
    tx: Tx,
    params: list[tuple[str, str]],
    res_type: str | None = None,
    res_id: str | None = None,
) -> dict[str, Any]:
    """A history Bundle, newest first, paged by transaction number."""
    if res_type is not None:
        check_type(res_type)
    if res_id is not None and res_type is not None and tx.current(res_type, res_id) is None:
        raise NotFound(f"{res_type}/{res_id} is not known")
    values = dict(params)
    unknown = [k for k, _ in params if k not in _ALLOWED]
    if unknown:
        raise Invalid(f"Unknown history parameter '{unknown[0]}'", unknown[0])
    since = _instant(values, "_since")
    at = _instant(values, "_at")
    count = _count(values.get("_count"), ctx.settings.default_count, ctx.settings.max_count)
    before = values.get("_page_before")
    if before is not None and not before.isdigit():
        raise Invalid("Invalid history page cursor", "_page_before")
    rows = tx.history(
        res_type=res_type,
        res_id=res_id,
        since=since,
        at=at,
        before_txn=int(before) if before else None,
        limit=count + 1,
    )
    more = len(rows) > count
    last_txn = rows[count - 1][0] if more and count else None  # paging continues after the unfiltered page
    rows = enforce.history(tx, ctx.principal, res_type, res_id, rows[:count])
    base = ctx.settings.base
    path = "/".join(p for p in (res_type, res_id, "_history") if p)
    keep = [(k, v) for k, v in params if k != "_page_before"]
    links = [link("self", page_url(base, path, params))]
    if more and last_txn is not None:
        links.append(link("next", page_url(base, path, [*keep, ("_page_before", str(last_txn))])))
    total = None
    if since is None and at is None and res_id is not None:
        total = tx.count_history(res_type=res_type, res_id=res_id)
    audit.note_contents([s.content for _, s in rows])
    return bundle("history", [history_entry(base, s) for _, s in rows], links, total)


def _instant(values: dict[str, str], name: str) -> int | None:
    raw = values.get(name)
    if raw is None:
        return None
    try:
        return instant.parse(raw)
    except ValueError:
        raise Invalid(f"Parameter {name} must be an instant, got '{raw}'", name) from None


def _count(raw: str | None, default: int, maximum: int) -> int:
    if raw is None:
        return default
    if not raw.isdigit():
        raise Invalid(f"_count must be a non-negative integer, got '{raw}'", "_count")
    return min(int(raw), maximum)
