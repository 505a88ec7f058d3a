"""A transaction's conditional creates (`ifNoneExist`) resolved together (https://hl7.org/fhir/R4/http.html#ccreate, #transaction).

Each entry keeps the meaning it has on its own, in the order the transaction performs its POSTs:
the criteria match one resource: 200 with it; none: create; several: 412. What changes is how the
matches are found. Criteria that are one token, `identifier=[system|]value` (what wearable
bridges and `fhir-server ingest` send) or `_tag=...` (the ingest's Provenance), are looked up for
the whole Bundle in one indexed statement per type (search/token_batch.py), within the caller's
grants; the Bundle's own earlier POSTs are matched in memory from their index rows of that
parameter, so an entry whose criteria an earlier entry's new resource meets resolves to that
resource, as a one-by-one search after that write would find
it. Any other criteria keep the search of `conditional.matches` (per entry, when it is performed).

The transaction has taken the locks of every criteria up front (Store.lock_all) and flushed its
deletes before this runs, so no concurrent writer can create a match in between.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from ..auth import enforce
from ..errors import Invalid, PreconditionFailed
from ..search import token_batch
from ..search.index import param_tuples
from ..search.query import SearchQuery
from ..search.types.token import TokenValue, parse_token
from ..search.values import split
from ..store.sql import Stored, Tx
from .bundle_entry import Request
from .context import Context
from .search import parse

_CHUNK = 500  # identifier codes per statement


@dataclass
class Resolved:
    """What a conditional create entry resolved to: a stored match, an earlier entry of the Bundle
    that creates the match (its index), or nothing (`create`)."""

    existing: Stored | None = None
    same_as: int | None = None
    same_id: str | None = None  # the id the transaction gave entry `same_as`

    @property
    def create(self) -> bool:
        return self.existing is None and self.same_as is None


@dataclass
class _Criteria:
    req: Request
    query: SearchQuery
    value: TokenValue
    db: list[int] = field(default_factory=list)  # pks of stored matches, ascending


def resolve(ctx: Context, tx: Tx, requests: list[Request]) -> dict[int, Resolved]:
    """Resolve the token-shaped `ifNoneExist` of the POST entries (by entry index); entries
    left out are resolved one by one. 412 for criteria that match more than one resource."""
    posts = sorted((r for r in requests if r.method == "POST" and r.res_type), key=lambda r: r.index)
    shaped: dict[str, list[_Criteria]] = {}
    other_types: set[str] = set()
    for req in posts:
        assert req.res_type is not None
        if not req.if_none_exist:
            continue
        params = parse_qsl(req.if_none_exist.lstrip("?"), keep_blank_values=True)
        if not params:
            raise Invalid("Conditional request without search criteria", "criteria")
        group = shaped.get(req.res_type)
        value = _same_shape(group[0].query, params) if group else None
        if value is not None:  # parsed as query.parse would, without planning the search again
            assert group is not None
            group.append(_Criteria(req, group[0].query, value))
            continue
        q = parse(ctx, req.res_type, params, lenient=False)
        value = token_batch.token_value(q)
        if value is None or (
            group and token_batch.parameter(q)[0] != token_batch.parameter(group[0].query)[0]
        ):
            other_types.add(req.res_type)
        else:
            shaped.setdefault(req.res_type, []).append(_Criteria(req, q, value))
    # A type with other conditional creates too (other criteria, another parameter): what those
    # create is known only when they run.
    for res_type in other_types:
        shaped.pop(res_type, None)
    if not shaped:
        return {}
    tx.flush(check_references=False)  # the deletes before; references are checked at the end
    resolved: dict[int, Resolved] = {}
    for res_type, group in shaped.items():
        _look_up(ctx, tx, res_type, group)
    wanted = {pk for group in shaped.values() for c in group for pk in c.db[:1]}
    stored = {s.pk: s for s in tx.current_by_pks(sorted(wanted))}
    for res_type, group in shaped.items():
        resolved.update(_in_order(res_type, group, [r for r in posts if r.res_type == res_type], stored))
    return resolved


def _same_shape(q: SearchQuery, params: list[tuple[str, str]]) -> TokenValue | None:
    """The value of `<param>=<one token>` criteria on the parameter `q` (such criteria) searches:
    the parameter's own parser on the value's one piece, as query.parse runs it; None otherwise."""
    code = token_batch.parameter(q)[0]
    if len(params) != 1 or params[0][0] != code or not params[0][1]:
        return None  # an empty value is no criterion at all to query.parse
    pieces = split(params[0][1], ",", code)
    if len(pieces) != 1:
        return None
    value = parse_token(pieces[0], code)
    return value if value.code is not None else None


def _look_up(ctx: Context, tx: Tx, res_type: str, group: list[_Criteria]) -> None:
    """The stored matches of each criteria of one type: one statement per `_CHUNK` codes."""
    _, ids = token_batch.parameter(group[0].query)
    restrict = enforce.search_restriction(ctx.principal, group[0].query, ctx.settings.base)
    codes = sorted({c.value.code for c in group if c.value.code is not None})
    rows: dict[str, list[tuple[int, str | None]]] = {}
    for i in range(0, len(codes), _CHUNK):
        chunk = codes[i : i + _CHUNK]
        stmt = token_batch.statement(res_type, ids, chunk, restrict, postgres=not ctx.store.sqlite)
        for row in tx.run_search(stmt):
            rows.setdefault(row.code, []).append((int(row.resource_pk), row.system))
    for c in group:
        assert c.value.code is not None
        code = c.value.code[: token_batch.MAX]  # as indexed
        found = {pk for pk, system in rows.get(code, ()) if token_batch.token_holds(c.value, system, code)}
        c.db = sorted(found)


def _in_order(
    res_type: str, group: list[_Criteria], posts: list[Request], stored: dict[int, Stored]
) -> dict[int, Resolved]:
    """Walk the type's POST entries in the order they are performed: each conditional one sees the
    stored matches plus the resources the entries before it create."""
    by_index = {c.req.index: c for c in group}
    code, param_ids = token_batch.parameter(group[0].query)
    ids = set(param_ids)
    created: dict[str | None, list[tuple[int, str | None]]] = {}  # code -> (entry, system) created
    out: dict[int, Resolved] = {}
    for req in posts:
        c = by_index.get(req.index)
        if c is not None:
            assert c.value.code is not None
            value = c.value.code[: token_batch.MAX]
            candidates = created.get(value, ())
            earlier = sorted(
                {i for i, system in candidates if token_batch.token_holds(c.value, system, value)}
            )
            if len(c.db) + len(earlier) > 1:
                raise PreconditionFailed(
                    f"ifNoneExist '{req.if_none_exist}' matches more than one {res_type}",
                    f"{req.where}.request.ifNoneExist",
                )
            if c.db:
                out[req.index] = Resolved(existing=stored[c.db[0]])
                continue
            if earlier:
                out[req.index] = Resolved(same_as=earlier[0])
                continue
            out[req.index] = Resolved()
        if isinstance(req.resource, dict):
            for row in param_tuples(req.resource, code).get("token", []):
                if row[0] in ids:
                    created.setdefault(row[3], []).append((req.index, row[2]))
    return out
