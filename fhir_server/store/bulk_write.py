"""Batched, indexed resource writes for bulk import (https://hl7.org/fhir/R4/http.html#update).

Many resources per transaction; an existing id gets a new version (update semantics).

`write(store, resources)` stores validated resources that each carry an id, in ONE transaction:
new ids are inserted, existing ones become updates with a new version, and a resource whose
content equals its current version (ignoring meta.versionId and meta.lastUpdated) is left alone,
so importing the same file twice creates no versions. Rows go in through the store's hot-path SQL
(store/fast.py: keys from the sequence and binary COPY on PostgreSQL, executemany on SQLite).
Either the whole batch is stored or nothing is (a failure rolls back; the caller retries one by
one to isolate the culprit). References are NOT checked (bulk loads arrive in any order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, select

from .. import instant
from ..errors import Conflict
from ..search.index import index_tuples
from . import fast
from . import tables as t
from .outbox import WriteContext
from .sql import Store, Tx, VersionConflict, serialise

CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class _Current:
    pk: int
    version: int
    deleted: bool
    content: bytes


def _comparable(resource: dict[str, Any]) -> dict[str, Any]:
    out = dict(resource)
    meta = dict(out.get("meta") or {})
    meta.pop("versionId", None)
    meta.pop("lastUpdated", None)
    if meta:
        out["meta"] = meta
    else:
        out.pop("meta", None)
    return out


def same_content(stored: bytes, resource: dict[str, Any]) -> bool:
    """The resource says what the stored version says (server-set meta aside)."""
    return _comparable(orjson.loads(stored)) == _comparable(resource)


# One unique-index probe per id (uq_resource_type_id) when the statistics know the type has more
# than a handful of rows. When they say it has (almost) none, which is true right after a large load
# of other types, PostgreSQL scans every row of the type through ix_resource_type_updated per batch
# instead (measured: 3 -> 128 us per imported Observation at 100,000 after a Patient import, growing
# with the table); the Loader (import_.py) re-analyzes `resource` once a run has written a few
# thousand of a type. Unprepared, so each batch is planned with the statistics of the moment: a
# cached generic plan made while the table was empty scans too.
_PG_CURRENT = (
    "SELECT r.pk, r.res_id, r.version, r.deleted, r.content FROM unnest(%s::text[]) AS k(id) "
    "JOIN LATERAL (SELECT pk, res_id, version, deleted, content FROM resource "
    "WHERE res_type = %s AND res_id = k.id) AS r ON true"
)


def _current(
    conn: Connection, keys: list[tuple[str, str]], postgres: bool
) -> dict[tuple[str, str], _Current]:
    r = t.resource.c
    by_type: dict[str, list[str]] = {}
    for rtype, rid in keys:
        by_type.setdefault(rtype, []).append(rid)
    found: dict[tuple[str, str], _Current] = {}
    raw = fast.raw_connection(conn) if postgres else None
    for rtype, ids in by_type.items():
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            if raw is not None:
                rows = raw.execute(_PG_CURRENT, (chunk, rtype), prepare=False).fetchall()
                for pk, rid, version, deleted, content in rows:
                    found[(rtype, rid)] = _Current(pk, version, deleted, content)
                continue
            for row in conn.execute(
                select(r.pk, r.res_id, r.version, r.deleted, r.content).where(
                    r.res_type == rtype, r.res_id.in_(chunk)
                )
            ):
                found[(rtype, row.res_id)] = _Current(row.pk, row.version, row.deleted, row.content)
    return found


def write(
    store: Store,
    resources: list[dict[str, Any]],
    indexes: list[fast.IndexRows] | None = None,
    *,
    context: WriteContext = WriteContext("import"),
    durable: bool = True,
) -> list[str]:
    """Store the resources (distinct type/id pairs, validated, ids set); returns what happened to each.

    `indexes` are their search index rows when already computed (`index_tuples(resource)`).
    `durable=False` commits without waiting for the WAL flush on PostgreSQL (synchronous_commit off,
    https://www.postgresql.org/docs/15/wal-async-commit.html): a crash may lose the last such batches
    but never leaves one half written, and the next durable commit (`sync`, a job checkpoint) makes
    them all durable first. `context` (the job and its requester) goes with every version stored.
    """
    keys = [(res["resourceType"], res["id"]) for res in resources]
    if len(set(keys)) != len(keys):
        raise ValueError("a batch may hold each resource once")
    outcome: list[str] = []
    with store.write(context) as tx:
        sql = tx.sql
        assert sql is not None
        conn = tx.conn
        if not durable and not store.sqlite:
            fast.raw_connection(conn).execute("SET LOCAL synchronous_commit = off")
        current = _current(conn, keys, not store.sqlite)
        ts = instant.now_us()
        batch = fast.Batch()
        for i, (resource, (rtype, rid)) in enumerate(zip(resources, keys, strict=True)):
            prev = current.get((rtype, rid))
            if prev is not None and not prev.deleted and same_content(prev.content, resource):
                outcome.append(UNCHANGED)
                continue
            ts += 1
            version = 1 if prev is None else prev.version + 1
            content = serialise(resource, rid, version, ts)
            index = indexes[i] if indexes is not None else index_tuples(orjson.loads(content))
            if prev is None:
                batch.creates.append(fast.NewResource(rtype, rid, ts, content, index, "POST"))
                outcome.append(CREATED)
                continue
            if not sql.bump(conn, prev.pk, prev.version, version, ts, False, content):
                raise VersionConflict(f"{rtype}/{rid} changed during the import")
            batch.versions.append((prev.pk, rtype, rid, version, ts, False, "PUT", content))
            batch.reindex.append((prev.pk, index))
            outcome.append(UPDATED)
        try:
            tx.write_batch(batch)
        except fast.DuplicateId:
            raise Conflict("A resource of this batch was created concurrently; retry") from None
    return outcome


def commit_asynchronously(tx: Tx) -> None:
    """Let `tx` commit without waiting for the WAL flush on PostgreSQL (see `write`'s `durable`);
    `sync`, or any later synchronous commit, makes it durable."""
    if tx.conn.dialect.name == "postgresql":
        fast.raw_connection(tx.conn).execute("SET LOCAL synchronous_commit = off")


def sync(store: Store) -> None:
    """Wait until every batch written with `durable=False` is durable (a synchronous commit flushes
    the WAL up to its own commit record, which comes after theirs)."""
    if store.sqlite:
        return
    with store.engine.begin() as conn:
        conn.exec_driver_sql("SELECT txid_current()")
