"""Hand-written SQL for the store's hot paths: read by id, optimistic version bumps, and a flush's rows.

A flush (store/sql.py) hands over everything one transaction has buffered: new resources, versions,
stale index rows to drop, new index rows, and the references that must resolve. Sending that as
SQLAlchemy statements costs a statement build and a round trip per table; here:

- PostgreSQL: new primary keys come from the sequence in one round trip; a small flush then goes as
  ONE pipeline (https://www.psycopg.org/psycopg3/docs/advanced/pipeline.html) of multi-row INSERTs
  plus the reference check; a large one (a transaction Bundle) goes by binary COPY
  (https://www.psycopg.org/psycopg3/docs/basic/copy.html): about three times the rows per second of
  executemany, at a tenth of the client CPU.
- SQLite (in-process, no round trips): plain `executemany` on the sqlite3 cursor.

Everything runs on the SQLAlchemy connection's own DBAPI connection, inside its transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import psycopg
from sqlalchemy import BigInteger, Boolean, Connection, Float, Integer, LargeBinary, String, Table

from . import tables as t

Row = tuple[Any, ...]
IndexRows = dict[str, list[dict[str, Any]]]

RESOURCE_COLUMNS = ("pk", "res_type", "res_id", "version", "last_updated", "deleted", "content")
VERSION_COLUMNS = (
    "resource_pk",
    "res_type",
    "res_id",
    "version",
    "last_updated",
    "deleted",
    "method",
    "content",
)
# Index columns in row order: resource_pk, then the columns of search.index.COLUMNS.
INDEX_COLUMNS = {kind: tuple(c.name for c in table.columns) for kind, table in t.INDEX_TABLES.items()}
# From this many rows on, a PostgreSQL flush uses COPY (two round trips per table, ~1 µs of client CPU
# per row) instead of multi-row INSERTs in one pipeline (one round trip, ~15 µs per row).
COPY_MIN_ROWS = 100


class DuplicateId(Exception):
    """A new resource's (type, id) is already taken (a concurrent create won)."""


@dataclass(slots=True)
class NewResource:
    """A buffered create: its row without the primary key, its index rows and the HTTP method."""

    res_type: str
    res_id: str
    last_updated: int
    content: bytes
    index: IndexRows
    method: str


@dataclass(slots=True)
class Batch:
    """Everything one flush writes, in order: stale index rows go before new ones."""

    creates: list[NewResource] = field(default_factory=list)
    versions: list[Row] = field(default_factory=list)  # VERSION_COLUMNS order; updates and deletes
    reindex: list[tuple[int, IndexRows]] = field(default_factory=list)  # updated or deleted pks
    refs: set[tuple[str, str]] = field(default_factory=set)  # (type, id) that must exist afterwards


def _getters() -> dict[str, Callable[[dict[str, Any]], Any]]:
    return {kind: itemgetter(*cols[1:]) for kind, cols in INDEX_COLUMNS.items()}


_GET = _getters()
_FLOAT_POS = {
    kind: tuple(i for i, c in enumerate(table.columns) if isinstance(c.type, Float))
    for kind, table in t.INDEX_TABLES.items()
}


def _index_tuples(pk: int, index: IndexRows, out: dict[str, list[Row]]) -> None:
    for kind, rows in index.items():
        get = _GET[kind]
        bucket = out.setdefault(kind, [])
        for row in rows:
            values = get(row)
            bucket.append((pk, *values) if isinstance(values, tuple) else (pk, values))


def _rows(batch: Batch, pks: Sequence[int]) -> tuple[list[Row], list[Row], list[int], dict[str, list[Row]]]:
    """Resource rows, version rows, stale pks and index rows of a batch whose creates got `pks`."""
    resources: list[Row] = []
    versions = list(batch.versions)
    index: dict[str, list[Row]] = {}
    stale = [pk for pk, _ in batch.reindex]
    for pk, (_, idx) in zip(stale, batch.reindex, strict=True):
        _index_tuples(pk, idx, index)
    for pk, c in zip(pks, batch.creates, strict=True):
        resources.append((pk, c.res_type, c.res_id, 1, c.last_updated, False, c.content))
        versions.append((pk, c.res_type, c.res_id, 1, c.last_updated, False, c.method, c.content))
        _index_tuples(pk, c.index, index)
    return resources, versions, stale, index


def _pg_type(column: Any) -> str:
    kind = column.type
    if isinstance(kind, BigInteger):
        return "int8"
    if isinstance(kind, Integer):
        return "int4"
    if isinstance(kind, Boolean):
        return "bool"
    if isinstance(kind, LargeBinary):
        return "bytea"
    if isinstance(kind, Float):
        return "float8"
    if isinstance(kind, String):
        return "text"
    raise TypeError(f"no PostgreSQL type for {column}")


def _floats(kind: str, rows: list[Row]) -> list[Row]:
    """Float columns as floats (JSON integers arrive as int; COPY and arrays need one type)."""
    pos = _FLOAT_POS.get(kind)
    if not pos:
        return rows
    out = []
    for row in rows:
        values = list(row)
        for i in pos:
            if values[i] is not None:
                values[i] = float(values[i])
        out.append(tuple(values))
    return out


class _Postgres:
    """PostgreSQL (psycopg 3)."""

    def __init__(self) -> None:
        self.sequence: str | None = None
        self.tables: dict[str, tuple[Table, tuple[str, ...]]] = {
            "resource": (t.resource, RESOURCE_COLUMNS),
            "resource_version": (t.resource_version, VERSION_COLUMNS),
            **{table.name: (table, INDEX_COLUMNS[kind]) for kind, table in t.INDEX_TABLES.items()},
        }
        self.insert_sql: dict[str, tuple[str, str]] = {}
        self.copy_sql: dict[str, tuple[str, list[str]]] = {}
        for name, (table, cols) in self.tables.items():
            types = [_pg_type(table.c[c]) for c in cols]
            self.insert_sql[name] = (
                f"INSERT INTO {name} ({', '.join(cols)}) VALUES ",
                "(" + ", ".join(["%s"] * len(cols)) + ")",
            )
            self.copy_sql[name] = (f"COPY {name} ({', '.join(cols)}) FROM STDIN (FORMAT BINARY)", types)
        self.delete_sql = [
            f"DELETE FROM {table.name} WHERE resource_pk = ANY(%s::int8[])"
            for table in t.INDEX_TABLES.values()
        ]
        self.refs_sql = "SELECT res_type, res_id FROM resource WHERE NOT deleted AND (res_type, res_id) IN "
        cols = ", ".join(RESOURCE_COLUMNS)
        self.current_sql = f"SELECT {cols} FROM resource WHERE res_type = %s AND res_id = %s"
        self.bump_sql = (
            "UPDATE resource SET version = %s, last_updated = %s, deleted = %s, content = %s "
            "WHERE pk = %s AND version = %s"
        )

    def current(self, conn: Connection, res_type: str, res_id: str) -> Row | None:
        row: Row | None = _raw(conn).execute(self.current_sql, (res_type, res_id)).fetchone()
        return row

    def bump(
        self, conn: Connection, pk: int, prev: int, version: int, ts: int, deleted: bool, content: bytes
    ) -> bool:
        cur = _raw(conn).execute(self.bump_sql, (version, ts, deleted, content, pk, prev))
        return cur.rowcount == 1

    def write(self, conn: Connection, batch: Batch) -> set[tuple[str, str]]:
        raw = _raw(conn)
        try:
            pks = self._new_pks(raw, len(batch.creates)) if batch.creates else []
            resources, versions, stale, index = _rows(batch, pks)
            total = len(resources) + len(versions) + sum(len(v) for v in index.values())
            refs = sorted(batch.refs)
            small = total < COPY_MIN_ROWS
            found: list[psycopg.Cursor[Any]] = []
            with raw.pipeline():
                for sql in self.delete_sql if stale else ():
                    raw.execute(sql, (stale,))
                if small:
                    self._insert(raw, "resource", resources)
                    self._insert(raw, "resource_version", versions)
                    for kind, rows in index.items():
                        self._insert(raw, t.INDEX_TABLES[kind].name, _floats(kind, rows))
                    found = self._refs(raw, refs)
            if not small:
                self._copy(raw, "resource", resources)
                self._copy(raw, "resource_version", versions)
                for kind, rows in index.items():
                    self._copy(raw, t.INDEX_TABLES[kind].name, _floats(kind, rows))
                found = self._refs(raw, refs)
            return {(row[0], row[1]) for cur in found for row in cur.fetchall()}
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name == "uq_resource_type_id":
                raise DuplicateId() from None
            raise

    def _new_pks(self, raw: psycopg.Connection[Any], count: int) -> list[int]:
        if self.sequence is None:
            row = raw.execute("SELECT pg_get_serial_sequence('resource', 'pk')").fetchone()
            self.sequence = str(row[0]) if row else "resource_pk_seq"
        with raw.pipeline():  # with the BEGIN when this is the transaction's first statement
            cur = raw.execute(
                "SELECT nextval(%s::regclass) FROM generate_series(1, %s)", (self.sequence, count)
            )
        return sorted(r[0] for r in cur.fetchall())

    def _insert(self, raw: psycopg.Connection[Any], name: str, rows: list[Row]) -> None:
        """One multi-row INSERT (rows go in, and get serial keys, in the order given)."""
        if rows:
            head, one = self.insert_sql[name]
            raw.execute(head + ", ".join([one] * len(rows)), [v for row in rows for v in row])

    def _copy(self, raw: psycopg.Connection[Any], name: str, rows: list[Row]) -> None:
        if not rows:
            return
        sql, types = self.copy_sql[name]
        with raw.cursor() as cur, cur.copy(sql) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)

    def _refs(self, raw: psycopg.Connection[Any], refs: list[tuple[str, str]]) -> list[psycopg.Cursor[Any]]:
        """Queries for the targets that exist (results are read after the pipeline syncs)."""
        out = []
        for i in range(0, len(refs), 500):
            chunk = refs[i : i + 500]
            sql = self.refs_sql + "(VALUES " + ", ".join(["(%s, %s)"] * len(chunk)) + ")"
            out.append(raw.execute(sql, [v for ref in chunk for v in ref]))
        return out


class _Sqlite:
    """SQLite (sqlite3, in-process: statements are cheap, round trips do not exist)."""

    def __init__(self) -> None:
        def insert(name: str, cols: Iterable[str]) -> str:
            cols = list(cols)
            return f"INSERT INTO {name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"

        self.resource_sql = insert("resource", RESOURCE_COLUMNS[1:])
        self.version_sql = insert("resource_version", VERSION_COLUMNS)
        self.index_sql = {
            kind: insert(table.name, INDEX_COLUMNS[kind]) for kind, table in t.INDEX_TABLES.items()
        }
        self.delete_sql = [
            f"DELETE FROM {table.name} WHERE resource_pk = ?" for table in t.INDEX_TABLES.values()
        ]
        self.ref_sql = "SELECT 1 FROM resource WHERE res_type = ? AND res_id = ? AND NOT deleted"
        self.current_sql = (
            f"SELECT {', '.join(RESOURCE_COLUMNS)} FROM resource WHERE res_type = ? AND res_id = ?"
        )
        self.bump_sql = "UPDATE resource SET version = ?, last_updated = ?, deleted = ?, content = ? WHERE pk = ? AND version = ?"

    def current(self, conn: Connection, res_type: str, res_id: str) -> Row | None:
        row = _raw(conn).execute(self.current_sql, (res_type, res_id)).fetchone()
        if row is None:
            return None
        return (*row[:5], bool(row[5]), row[6])

    def bump(
        self, conn: Connection, pk: int, prev: int, version: int, ts: int, deleted: bool, content: bytes
    ) -> bool:
        cur = _raw(conn).execute(self.bump_sql, (version, ts, deleted, content, pk, prev))
        return cur.rowcount == 1

    def write(self, conn: Connection, batch: Batch) -> set[tuple[str, str]]:
        cur = _raw(conn).cursor()
        try:
            pks = []
            for c in batch.creates:
                try:
                    cur.execute(
                        self.resource_sql, (c.res_type, c.res_id, 1, c.last_updated, False, c.content)
                    )
                except sqlite3.IntegrityError as exc:
                    if "resource.res_type, resource.res_id" in str(exc):
                        raise DuplicateId() from None
                    raise
                pks.append(cur.lastrowid)
            _, versions, stale, index = _rows(batch, pks)
            if stale:
                for sql in self.delete_sql:
                    cur.executemany(sql, [(pk,) for pk in stale])
            cur.executemany(self.version_sql, versions)
            for kind, rows in index.items():
                cur.executemany(self.index_sql[kind], rows)
            return {ref for ref in batch.refs if cur.execute(self.ref_sql, ref).fetchone() is not None}
        finally:
            cur.close()


def _raw(conn: Connection) -> Any:
    """The DBAPI connection under a SQLAlchemy connection."""
    return conn.connection.driver_connection


Sql = _Postgres | _Sqlite


def for_dialect(sqlite: bool) -> Sql:
    """The hot-path SQL of one backend."""
    return _Sqlite() if sqlite else _Postgres()
