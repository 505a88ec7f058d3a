"""search: type, system and compartment search as a searchset Bundle (https://hl7.org/fhir/R4/search.html).

One SQL statement finds the page (keyset paging: page 500 costs what page 1 costs); a second
fetches `_include`/`_revinclude`d resources; `_total=accurate` adds a COUNT, otherwise the total is
given only when it is known for free (everything fits on the first page).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import orjson

from terminology import stored
from terminology.service import service

from ..audit import access as audit
from ..auth import enforce
from ..search import cursor_signing, plan, query
from ..search.bundle import bundle, link, page_url
from ..search.summary import subset
from ..store.sql import Tx
from .context import Context

_MODE_MATCH = {"mode": "match"}
_MODE_INCLUDE = {"mode": "include"}


def parse(
    ctx: Context, res_type: str | None, params: list[tuple[str, str]], lenient: bool
) -> query.SearchQuery:
    """Parse search parameters with the server's paging limits (400 naming any bad parameter)."""
    return query.parse(
        res_type, params, lenient=lenient, max_count=ctx.settings.max_count, cursor_key=cursor_key(ctx)
    )


def cursor_key(ctx: Context) -> bytes:
    """The key that signs this server's paging cursors."""
    return cursor_signing.key_for(ctx.settings.data_dir)


def search(
    ctx: Context,
    tx: Tx,
    res_type: str | None,
    params: list[tuple[str, str]],
    *,
    lenient: bool = False,
    compartment: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Run a search and return the searchset Bundle."""
    q = parse(ctx, res_type, params, lenient)
    base = ctx.settings.base
    restrict = enforce.search_restriction(ctx.principal, q, base)  # SMART grants, AND-ed in
    page_size = q.count if q.count is not None else ctx.settings.default_count
    count_only = q.summary == "count" or page_size == 0
    rows: list[Any] = []
    more = False  # rows beyond this page, in the direction of travel
    back = q.cursor is not None and q.cursor.before
    if not count_only:
        stmt = plan.build(
            q,
            compartment=compartment,
            restrict=restrict,
            base_url=base,
            default_count=page_size,
            terminology=terminology_for(ctx, tx),
        )
        rows = list(tx.run_search(stmt).all())
        more = len(rows) > page_size
        rows = rows[:page_size]
        if back:
            rows.reverse()
    total: int | None = None
    if q.total == "accurate" or count_only:
        counted = plan.count(
            q, compartment=compartment, restrict=restrict, base_url=base, terminology=terminology_for(ctx, tx)
        )
        total = int(tx.run_search(counted).scalar_one())
    elif q.total != "none" and not more and q.cursor is None:  # the whole result is on this page
        total = len(rows)
    included = plan.includes(tx.run_search, q, [r.pk for r in rows], base_url=base) if rows else []
    included = enforce.readable_rows(tx, ctx.principal, included)  # only what the caller may read

    path = _path(res_type, compartment)
    links = [link("self", page_url(base, path, list(q.used)))]
    has_next = (more and not back) or (back and q.cursor is not None)
    has_previous = (more and back) or (q.cursor is not None and not back)
    if rows and has_previous:
        cursor = plan.previous_cursor(q, rows[0], cursor_key(ctx))
        links.append(link("previous", page_url(base, path, [*q.used, ("_cursor", cursor)])))
    if rows and has_next:
        cursor = plan.next_cursor(q, rows[-1], cursor_key(ctx))
        links.append(link("next", page_url(base, path, [*q.used, ("_cursor", cursor)])))
    entries = [_entry(base, r.content, _MODE_MATCH, q) for r in rows]
    entries += [_entry(base, r.content, _MODE_INCLUDE, q) for r in included]
    audit.note_query(urlencode(list(q.used)))
    audit.note_contents([r.content for r in rows] + [r.content for r in included])
    return bundle("searchset", entries, links, total)


def terminology_for(ctx: Context, tx: Tx) -> plan.Terminology:
    """The terminology service for :in / :not-in / :above / :below (https://hl7.org/fhir/R4/search.html#modifiers):
    what the server ships, and the value sets stored on it that the caller may search for."""
    return service().with_store(stored.resolver(tx, ctx.principal, ctx.settings.base))


def match_pks(ctx: Context, tx: Tx, res_type: str, params: list[tuple[str, str]], limit: int) -> list[int]:
    """Surrogate keys of up to `limit` current matches (for conditional interactions)."""
    q = parse(ctx, res_type, params, lenient=False)
    q = replace(q, count=max(limit - 1, 0), sort=(), includes=(), cursor=None)
    restrict = enforce.search_restriction(ctx.principal, q, ctx.settings.base)
    stmt = plan.build(
        q,
        restrict=restrict,
        base_url=ctx.settings.base,
        default_count=max(limit - 1, 0),
        terminology=terminology_for(ctx, tx),
    )
    return [int(r.pk) for r in tx.run_search(stmt)]


def _path(res_type: str | None, compartment: tuple[str, str] | None) -> str:
    if compartment is not None:
        return f"{compartment[0]}/{compartment[1]}/{res_type or '*'}"
    return res_type or ""


def _entry(base: str, content: bytes, mode: dict[str, str], q: query.SearchQuery) -> dict[str, Any]:
    rtype, rid = type_and_id(content)
    body: Any = orjson.Fragment(content)
    if q.summary in ("true", "text", "data") or q.elements:
        body = subset(orjson.loads(content), q.summary, q.elements)
    return {"fullUrl": f"{base}/{rtype}/{rid}", "resource": body, "search": mode}


def type_and_id(content: bytes) -> tuple[str, str]:
    """resourceType and id of stored JSON, which always starts with them (store.sql.serialise)."""
    head = content[:200]
    try:
        start = head.index(b'"resourceType":"') + 16
        rtype = head[start : head.index(b'"', start)].decode()
        start = head.index(b'"id":"') + 6
        rid = head[start : head.index(b'"', start)].decode()
        return rtype, rid
    except ValueError:
        resource = orjson.loads(content)
        return resource["resourceType"], resource["id"]
