"""Resources as of `transactionTime` (https://hl7.org/fhir/uv/bulkdata/STU2/export.html#response---complete-status).

Streamed in pk order.

The export must contain every matching resource modified up to and including transactionTime and
nothing modified later. The `resource` table holds current versions: a row whose `last_updated` is
at or before the snapshot is what it was then; a row changed after it is replaced by its latest
version at or before the snapshot from `resource_version` (none: created later, left out; a deletion:
it did not exist then). Before reading, `settle()` waits until writes stamped before the snapshot
have committed (write transactions take their timestamp before they commit).

Which resources match (compartment, `_typeFilter`, granular scopes) is decided by SQL conditions on
the search index, which holds current values. For rows unchanged since the snapshot that is their
state then. Each row changed after it that existed then is checked against the conditions as it was
(`_matched_then`): inside a write transaction that is always rolled back, its row and index rows are
put back to the snapshot version and the conditions are evaluated by the same SQL. So a resource
that matched then is exported even if it was changed or deleted since, and one that matches only
since is not.

Rows come from two server-side cursors (PostgreSQL: `stream_results`, `yield_per`) on `pk > after`,
ordered by pk and merged (rows unchanged since the snapshot, and rows changed after it), so memory
stays flat and a resumed run continues after the last checkpointed pk.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    delete,
    exists,
    false,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)

from .. import instant
from ..search.index import COLUMNS, index_tuples
from . import tables as t
from .sql import Store

R = t.resource
V = t.resource_version
BATCH = 1000


@dataclass(frozen=True, slots=True)
class Found:
    """One resource as of the snapshot."""

    pk: int
    res_id: str
    version: int
    last_updated: int
    deleted: bool
    content: bytes


def settle(store: Store, transaction_time: int, settle_seconds: float, max_wait: float = 60.0) -> None:
    """Wait until writes stamped at or before `transaction_time` are committed."""
    delay = (transaction_time + int(settle_seconds * 1_000_000) - instant.now_us()) / 1_000_000
    if delay > 0:
        time.sleep(delay)
    if store.sqlite:
        return  # one writer at a time, each done within the settle time
    deadline = time.monotonic() + max_wait
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND backend_xid IS NOT NULL"
        " AND pid <> pg_backend_pid() AND xact_start <= to_timestamp(:t)"
    )
    with store.engine.connect() as conn:
        while time.monotonic() < deadline:
            if not conn.execute(query, {"t": transaction_time / 1_000_000}).scalar():
                return
            conn.rollback()
            time.sleep(0.2)


def present_types(store: Store) -> set[str]:
    """The resource types that have rows at all, by a skip scan of the (res_type, ...) index."""
    query = text(
        "WITH RECURSIVE present(rt) AS ("
        " SELECT min(res_type) FROM resource"
        " UNION ALL"
        " SELECT (SELECT min(res_type) FROM resource WHERE res_type > present.rt) FROM present"
        " WHERE present.rt IS NOT NULL"
        ") SELECT rt FROM present WHERE rt IS NOT NULL"
    )
    with store.engine.connect() as conn:
        return set(conn.execute(query).scalars())


def changed_version(store: Store, pk: int, transaction_time: int) -> Found | None:
    """The resource `pk` as of the snapshot when it changed after it (None when it did not change,
    or did not exist then; `Found.deleted` when it was deleted then)."""
    with store.engine.connect() as conn:
        changed = conn.execute(
            select(R.c.pk).where(R.c.pk == pk, R.c.last_updated > transaction_time)
        ).first()
        return _as_of(conn, pk, transaction_time) if changed is not None else None


def _as_of(conn: Connection, pk: int, transaction_time: int) -> Found | None:
    row = conn.execute(
        select(V.c.resource_pk, V.c.res_id, V.c.version, V.c.last_updated, V.c.deleted, V.c.content)
        .where(V.c.resource_pk == pk, V.c.last_updated <= transaction_time)
        .order_by(V.c.version.desc())
        .limit(1)
    ).first()
    conn.rollback()
    if row is None:
        return None
    return Found(row.resource_pk, row.res_id, row.version, row.last_updated, row.deleted, row.content)


def _last_live_content(store: Store, deletion: Found) -> bytes | None:
    """The content of the version a deletion ended (a deletion matches what it deleted)."""
    with store.engine.connect() as conn:
        row = conn.execute(
            select(V.c.content)
            .where(V.c.resource_pk == deletion.pk, V.c.version < deletion.version, V.c.deleted == false())
            .order_by(V.c.version.desc())
            .limit(1)
        ).first()
    return bytes(row.content) if row is not None else None


class _Undo(Exception):
    """Rolls back the transaction of `_matched_then`."""


def _matched_then(store: Store, found: Found, conditions: list[ColumnElement[bool]]) -> bool:
    """Whether the resource, as it was at the snapshot (`found`), met `conditions`."""
    if not conditions:
        return True
    content = _last_live_content(store, found) if found.deleted else found.content
    index = index_tuples(orjson.loads(content)) if content else {}
    matched = False
    try:
        with store.write() as tx:
            conn = tx.conn
            # The resource row first, then its index rows: the order writers lock them in, so this
            # never deadlocks with a concurrent update of the same resource (it waits for it).
            conn.execute(
                update(R)
                .where(R.c.pk == found.pk)
                .values(
                    version=found.version,
                    last_updated=found.last_updated,
                    deleted=found.deleted,
                    content=found.content,
                )
            )
            for table in t.INDEX_TABLES.values():
                conn.execute(delete(table).where(table.c.resource_pk == found.pk))
            for kind, rows in index.items():
                names = ("resource_pk", *COLUMNS[kind])
                conn.execute(
                    insert(t.INDEX_TABLES[kind]),
                    [dict(zip(names, (found.pk, *row), strict=True)) for row in rows],
                )
            matched = (
                conn.execute(select(literal(1)).where(R.c.pk == found.pk, *conditions)).first() is not None
            )
            raise _Undo
    except _Undo:
        pass
    return matched


def matched_then_pks(
    store: Store, resource_type: str, conditions: list[ColumnElement[bool]], transaction_time: int
) -> list[int]:
    """Resources of a type changed after the snapshot that were alive at it and met `conditions` then
    (what a condition on *other* resources, e.g. a Provenance's targets, must see besides the rows
    unchanged since)."""
    query = select(R.c.pk).where(R.c.res_type == resource_type, _changed_after(transaction_time))
    out: list[int] = []
    with store.engine.connect() as conn:
        pks = list(conn.execute(query).scalars())
        for pk in pks:
            found = _as_of(conn, pk, transaction_time)
            if found is not None and not found.deleted and _matched_then(store, found, conditions):
                out.append(pk)
    return out


def _changed_after(transaction_time: int) -> ColumnElement[bool]:
    """Rows of `resource` changed after the snapshot that existed at it (a version at or before it)."""
    existed = exists().where(V.c.resource_pk == R.c.pk, V.c.last_updated <= transaction_time)
    return and_(R.c.last_updated > transaction_time, existed)


def _tagged(rows: Iterator[Any], *, check: bool) -> Iterator[tuple[int, bool, Any]]:
    for row in rows:
        yield row.pk, check, row


def _rows(conn: Connection, stmt: Any, sqlite: bool) -> Iterator[Any]:
    if not sqlite:
        conn = conn.execution_options(stream_results=True, yield_per=BATCH)
    yield from conn.execute(stmt)


def stream(
    store: Store,
    resource_type: str,
    conditions: list[ColumnElement[bool]],
    *,
    transaction_time: int,
    since: int | None,
    after: int = 0,
) -> Generator[Found, None, None]:
    """Resources of a type meeting `conditions` as of `transaction_time`, pk ascending, after `after`.

    Without `since`, deleted resources are left out; with it, resources changed after `since` come
    out, deletions included (`Found.deleted`), for the manifest's `deleted` files.
    """
    columns = (R.c.pk, R.c.res_id, R.c.version, R.c.last_updated, R.c.deleted, R.c.content)
    # Exact from the index: live rows unchanged since the snapshot.
    unchanged = select(*columns).where(
        R.c.res_type == resource_type,
        R.c.pk > after,
        R.c.last_updated <= transaction_time,
        R.c.deleted == false(),
        *conditions,
    )
    # Checked one by one (`_matched_then`): rows changed after the snapshot that existed at it, and
    # with `since`, deletions between it and the snapshot (their index rows are gone).
    to_check = _changed_after(transaction_time)
    if since is not None:
        unchanged = unchanged.where(R.c.last_updated > since)
        deleted_since = and_(R.c.deleted, R.c.last_updated > since, R.c.last_updated <= transaction_time)
        to_check = or_(to_check, deleted_since)
    checked = select(*columns).where(R.c.res_type == resource_type, R.c.pk > after, to_check)
    with store.engine.connect() as first, store.engine.connect() as second, store.engine.connect() as lookup:
        merged = heapq.merge(
            _tagged(_rows(first, unchanged.order_by(R.c.pk), store.sqlite), check=False),
            _tagged(_rows(second, checked.order_by(R.c.pk), store.sqlite), check=True),
        )
        for _, check, row in merged:
            as_stored = Found(row.pk, row.res_id, row.version, row.last_updated, row.deleted, row.content)
            if not check:
                yield as_stored
                continue
            found = (
                as_stored
                if row.last_updated <= transaction_time
                else _as_of(lookup, row.pk, transaction_time)
            )
            if found is None:
                continue
            if since is None and found.deleted:
                continue
            if since is not None and found.last_updated <= since:
                continue
            if _matched_then(store, found, conditions):
                yield found
