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

import functools
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, select, text

from .. import instant
from ..errors import Conflict
from ..search.index import IndexRows, index_rows
from ..store import fast
from ..store import tables as t
from ..store.sql import Store, VersionConflict, serialise

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


# One unique-index probe per id, whatever the planner's statistics say (right after a large load
# they are stale, and `res_id = ANY(...)` would be answered by scanning every row of the type).
_PG_CURRENT = text(
    "SELECT r.pk, r.res_id, r.version, r.deleted, r.content FROM unnest(CAST(:ids AS text[])) AS k(id) "
    "JOIN LATERAL (SELECT pk, res_id, version, deleted, content FROM resource "
    "WHERE res_type = :rtype AND res_id = k.id) AS r ON true"
)


def _current(
    conn: Connection, keys: list[tuple[str, str]], postgres: bool
) -> dict[tuple[str, str], _Current]:
    r = t.resource.c
    by_type: dict[str, list[str]] = {}
    for rtype, rid in keys:
        by_type.setdefault(rtype, []).append(rid)
    found: dict[tuple[str, str], _Current] = {}
    for rtype, ids in by_type.items():
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            if postgres:
                rows = conn.execute(_PG_CURRENT, {"ids": chunk, "rtype": rtype})
            else:
                rows = conn.execute(
                    select(r.pk, r.res_id, r.version, r.deleted, r.content).where(
                        r.res_type == rtype, r.res_id.in_(chunk)
                    )
                )
            for row in rows:
                found[(rtype, row.res_id)] = _Current(row.pk, row.version, row.deleted, row.content)
    return found


def write(store: Store, resources: list[dict[str, Any]], indexes: list[IndexRows] | None = None) -> list[str]:
    """Store the resources (distinct type/id pairs, validated, ids set); returns what happened to each.

    `indexes` are their search index rows when already computed (`index_rows(resource)`).
    """
    keys = [(res["resourceType"], res["id"]) for res in resources]
    if len(set(keys)) != len(keys):
        raise ValueError("a batch may hold each resource once")
    sql = _sql(store.sqlite)
    outcome: list[str] = []
    with store.write() as tx:
        conn = tx.conn
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
            index = indexes[i] if indexes is not None else index_rows(orjson.loads(content))
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
            sql.write(conn, batch)
        except fast.DuplicateId:
            raise Conflict("A resource of this batch was created concurrently; retry") from None
    return outcome


@functools.cache
def _sql(sqlite: bool) -> fast.Sql:
    return fast.for_dialect(sqlite)
