"""Batched resource writes for bulk import: many resources per transaction, indexed
(https://hl7.org/fhir/R4/http.html#update semantics: an existing id gets a new version).

`write(store, resources)` stores validated resources that each carry an id, in ONE transaction:
new ids are inserted (multi-row INSERT ... RETURNING), existing ones become updates with a new
version, and a resource whose content equals its current version (ignoring meta.versionId and
meta.lastUpdated) is left alone, so importing the same file twice creates no versions. Versions
and search index rows go in with COPY on PostgreSQL and multi-row INSERTs on SQLite. Either the
whole batch is stored or nothing is (a failure rolls back; the caller retries one by one to isolate
the culprit). References are NOT checked (bulk loads arrive in any order).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, delete, insert, select, tuple_, update

from .. import instant
from ..search.index import COLUMNS, index_rows
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


def _current(conn: Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], _Current]:
    r = t.resource.c
    found: dict[tuple[str, str], _Current] = {}
    for i in range(0, len(keys), _CHUNK):
        chunk = keys[i : i + _CHUNK]
        rows = conn.execute(
            select(r.pk, r.res_type, r.res_id, r.version, r.deleted, r.content).where(
                tuple_(r.res_type, r.res_id).in_(chunk)
            )
        )
        for row in rows:
            found[(row.res_type, row.res_id)] = _Current(row.pk, row.version, row.deleted, row.content)
    return found


def _copy(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


_VERSION_COLUMNS = (
    "resource_pk",
    "res_type",
    "res_id",
    "version",
    "last_updated",
    "deleted",
    "method",
    "content",
)


def _insert_many(
    conn: Connection, postgres: bool, table: Any, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    if not rows:
        return
    if postgres:
        _copy(conn, table.name, columns, rows)
    else:
        conn.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])


def write(store: Store, resources: list[dict[str, Any]]) -> list[str]:
    """Store the resources (distinct type/id pairs, validated, ids set); returns what happened to each."""
    postgres = not store.sqlite
    keys = [(res["resourceType"], res["id"]) for res in resources]
    if len(set(keys)) != len(keys):
        raise ValueError("a batch may hold each resource once")
    outcome: list[str] = []
    with store.write() as tx:
        conn = tx.conn
        current = _current(conn, keys)
        ts = instant.now_us()
        creates: list[dict[str, Any]] = []
        create_index: list[dict[str, list[dict[str, Any]]]] = []
        versions: list[tuple[Any, ...]] = []
        reindex: list[tuple[int, dict[str, list[dict[str, Any]]]]] = []
        for resource, key in zip(resources, keys, strict=True):
            prev = current.get(key)
            if prev is not None and not prev.deleted and same_content(prev.content, resource):
                outcome.append(UNCHANGED)
                continue
            ts += 1
            version = 1 if prev is None else prev.version + 1
            content = serialise(resource, key[1], version, ts)
            index = index_rows(orjson.loads(content))
            if prev is None:
                creates.append(
                    {
                        "res_type": key[0],
                        "res_id": key[1],
                        "version": 1,
                        "last_updated": ts,
                        "deleted": False,
                        "content": content,
                    }
                )
                create_index.append(index)
                outcome.append(CREATED)
                continue
            changed = conn.execute(
                update(t.resource)
                .where(t.resource.c.pk == prev.pk, t.resource.c.version == prev.version)
                .values(version=version, last_updated=ts, deleted=False, content=content)
            ).rowcount
            if changed != 1:
                raise VersionConflict(f"{key[0]}/{key[1]} changed during the import")
            versions.append((prev.pk, key[0], key[1], version, ts, False, "PUT", content))
            reindex.append((prev.pk, index))
            outcome.append(UPDATED)
        if creates:
            pks = (
                conn.execute(
                    insert(t.resource).returning(t.resource.c.pk, sort_by_parameter_order=True), creates
                )
                .scalars()
                .all()
            )
            for pk, row, index in zip(pks, creates, create_index, strict=True):
                versions.append(
                    (
                        pk,
                        row["res_type"],
                        row["res_id"],
                        1,
                        row["last_updated"],
                        False,
                        "POST",
                        row["content"],
                    )
                )
                reindex.append((pk, index))
        _insert_many(conn, postgres, t.resource_version, _VERSION_COLUMNS, versions)
        stale = [pk for pk, _ in reindex[: len(reindex) - len(creates)]]
        for table in t.INDEX_TABLES.values():
            for i in range(0, len(stale), _CHUNK):
                conn.execute(delete(table).where(table.c.resource_pk.in_(stale[i : i + _CHUNK])))
        for kind, table in t.INDEX_TABLES.items():
            columns = ("resource_pk", *COLUMNS[kind])
            rows = [
                (pk, *(row[c] for c in COLUMNS[kind])) for pk, index in reindex for row in index.get(kind, ())
            ]
            _insert_many(conn, postgres, table, columns, rows)
    return outcome
