"""Resources as of `transactionTime` (https://hl7.org/fhir/uv/bulkdata/STU2/export.html#response---complete-status).

Streamed in pk order.

The export must contain every matching resource modified up to and including transactionTime and
nothing modified later. The `resource` table holds current versions: a row whose `last_updated` is
at or before the snapshot is what it was then; a row changed after it is replaced by its latest
version at or before the snapshot from `resource_version` (none: created later, left out; a deletion:
it did not exist then). Before reading, `settle()` waits until writes stamped before the snapshot
have committed (write transactions take their timestamp before they commit).

Rows come from one server-side cursor (PostgreSQL: `stream_results`, `yield_per`) on `pk > after`,
ordered by pk, so memory stays flat and a resumed run continues after the last checkpointed pk.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Connection, false, or_, select, text

from .. import instant
from ..store import tables as t
from ..store.sql import Store

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


def stream(
    store: Store,
    resource_type: str,
    conditions: list[ColumnElement[bool]],
    *,
    transaction_time: int,
    since: int | None,
    after: int = 0,
) -> Iterator[Found]:
    """Resources of a type meeting `conditions` as of `transaction_time`, pk ascending, after `after`.

    Without `since`, deleted resources are left out; with it, resources changed after `since` come
    out, deletions included (`Found.deleted`), for the manifest's `deleted` files.
    """
    stmt = select(R.c.pk, R.c.res_id, R.c.version, R.c.last_updated, R.c.deleted, R.c.content).where(
        R.c.res_type == resource_type, R.c.pk > after, *conditions
    )
    if since is None:
        stmt = stmt.where(or_(R.c.deleted == false(), R.c.last_updated > transaction_time))
    else:
        stmt = stmt.where(R.c.last_updated > since)
    stmt = stmt.order_by(R.c.pk)
    with store.engine.connect() as conn, store.engine.connect() as lookup:
        if not store.sqlite:
            conn = conn.execution_options(stream_results=True, yield_per=BATCH)
        for row in conn.execute(stmt):
            if row.last_updated <= transaction_time:
                found: Found | None = Found(
                    row.pk, row.res_id, row.version, row.last_updated, row.deleted, row.content
                )
            else:
                found = _as_of(lookup, row.pk, transaction_time)
            if found is None:
                continue
            if since is None and found.deleted:
                continue
            if since is not None and found.last_updated <= since:
                continue
            yield found
