"""Hand-written SQL for the store's hot paths: read by id, optimistic version bumps, and a flush's rows.

A flush (store/sql.py) hands over everything one transaction has buffered: new resources, versions,
stale index rows to drop, new index rows, and the references that must resolve. Sending that as
SQLAlchemy statements costs a statement build and a round trip per table; here:

- PostgreSQL: a small flush (a create, an update) is ONE statement of data-modifying CTEs
  (https://www.postgresql.org/docs/15/queries-with.html#QUERIES-WITH-MODIFYING): new keys from the
  sequence, stale index rows out, multi-row INSERTs, and the reference check; a large one (a
  transaction Bundle) goes by binary COPY (https://www.psycopg.org/psycopg3/docs/basic/copy.html):
  about three times the rows per second of executemany, at a tenth of the client CPU.
- SQLite (in-process, no round trips): plain `executemany` on the sqlite3 cursor.

Everything runs on the SQLAlchemy connection's own DBAPI connection, inside its transaction.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import orjson
import psycopg
from sqlalchemy import BigInteger, Boolean, Connection, Float, Integer, LargeBinary, String

from . import outbox
from . import tables as t

Row = tuple[Any, ...]
# Index rows by table kind: row tuples in search.index.COLUMNS order, or row dicts (search.index.index_rows).
IndexRows = dict[str, list[tuple[Any, ...]]] | dict[str, list[dict[str, Any]]]

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
    "context",
)
# Index columns in row order: resource_pk, then the columns of search.index.COLUMNS.
# A row key (idx_text.id) is left to the database.
INDEX_COLUMNS = {
    kind: tuple(c.name for c in table.columns if not c.primary_key) for kind, table in t.INDEX_TABLES.items()
}
# From this many rows on, a PostgreSQL flush uses COPY (two round trips per table, ~1 µs of client CPU
# per row) instead of one statement of multi-row INSERTs (one round trip, ~15 µs per row).
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
    versions: list[Row] = field(default_factory=list)  # VERSION_COLUMNS but context; updates, deletes
    reindex: list[tuple[int, IndexRows]] = field(default_factory=list)  # updated or deleted pks
    refs: set[tuple[str, str]] = field(default_factory=set)  # (type, id) that must exist afterwards
    context: int = 0  # write_context.id of every version (store/outbox.py: the change events)


def _getters() -> dict[str, Callable[[dict[str, Any]], Any]]:
    return {kind: itemgetter(*cols[1:]) for kind, cols in INDEX_COLUMNS.items()}


_GET = _getters()
_FLOAT_POS = {
    kind: tuple(
        i for i, c in enumerate(c for c in table.columns if not c.primary_key) if isinstance(c.type, Float)
    )
    for kind, table in t.INDEX_TABLES.items()
}


def _index_tuples(pk: int, index: IndexRows, out: dict[str, list[Row]]) -> None:
    """Append (pk, *values) rows; `index` holds row tuples (search.index.index_tuples) or row dicts."""
    for kind, rows in index.items():
        bucket = out.get(kind)
        if bucket is None:
            bucket = out[kind] = []
        if rows and isinstance(rows[0], dict):
            get = _GET[kind]
            single = len(INDEX_COLUMNS[kind]) == 2
            bucket.extend((pk, get(row)) if single else (pk, *get(row)) for row in rows)
        else:
            append = bucket.append  # a plain loop: a third cheaper than extend(generator)
            for row in rows:
                append((pk, *row))


def _rows(batch: Batch, pks: Sequence[int]) -> tuple[list[Row], list[Row], list[int], dict[str, list[Row]]]:
    """Resource rows, version rows, stale pks and index rows of a batch whose creates got `pks`."""
    resources: list[Row] = []
    context = batch.context
    versions = [(*v, context) for v in batch.versions]
    index: dict[str, list[Row]] = {}
    stale = [pk for pk, _ in batch.reindex]
    for pk, (_, idx) in zip(stale, batch.reindex, strict=True):
        _index_tuples(pk, idx, index)
    for pk, c in zip(pks, batch.creates, strict=True):
        resources.append((pk, c.res_type, c.res_id, 1, c.last_updated, False, c.content))
        versions.append((pk, c.res_type, c.res_id, 1, c.last_updated, False, c.method, c.content, context))
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
    """Float columns as floats (JSON integers arrive as int; COPY and arrays need one type).

    Rows are rebuilt only when one holds a non-float there (index rows normally hold floats)."""
    pos = _FLOAT_POS.get(kind)
    if not pos or all(row[i].__class__ is float or row[i] is None for row in rows for i in pos):
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

    # No pipeline mode: psycopg's pipeline busy-polls the socket while it waits for the server,
    # which cost more CPU than the round trips it saved (measured on the two-core machine).

    def __init__(self) -> None:
        self.sequence: str | None = None
        self.tables: dict[str, tuple[str, ...]] = {
            "resource": RESOURCE_COLUMNS,
            "resource_version": VERSION_COLUMNS,
            **{table.name: INDEX_COLUMNS[kind] for kind, table in t.INDEX_TABLES.items()},
        }
        table_of = {"resource": t.resource, "resource_version": t.resource_version}
        table_of.update({table.name: table for table in t.INDEX_TABLES.values()})
        self.types = {
            name: [_pg_type(table_of[name].c[c]) for c in cols] for name, cols in self.tables.items()
        }
        self.copy_sql = {
            name: f"COPY {name} ({', '.join(cols)}) FROM STDIN (FORMAT BINARY)"
            for name, cols in self.tables.items()
        }
        # versions that are not change events: the xid column given (NULL), not its default
        self.copy_sql["quiet_version"] = (
            f"COPY resource_version ({', '.join(VERSION_COLUMNS)}, xid) FROM STDIN (FORMAT BINARY)"
        )
        self.types["quiet_version"] = [*self.types["resource_version"], "int8"]
        self.delete = [
            f"DELETE FROM {table.name} WHERE resource_pk IN (SELECT pk FROM s)"
            for table in t.INDEX_TABLES.values()
        ]
        self.refs_sql = "SELECT res_type, res_id FROM resource WHERE NOT deleted AND (res_type, res_id) IN "
        self.statements: dict[tuple[bool, bool, tuple[str, ...], bool], str] = {}
        self.current_sql = (
            f"SELECT {', '.join(RESOURCE_COLUMNS)} FROM resource WHERE res_type = %s AND res_id = %s"
        )
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
        if self.sequence is None:
            row = raw.execute("SELECT pg_get_serial_sequence('resource', 'pk')").fetchone()
            self.sequence = str(row[0]) if row else "resource_pk_seq"
        n = len(batch.creates)
        total = 2 * n + len(batch.versions)
        if total < COPY_MIN_ROWS:  # else COPY anyway: a chunk of a thousand is not counted again
            total += sum(len(rows) for c in batch.creates for rows in c.index.values())
            total += sum(len(rows) for _, idx in batch.reindex for rows in idx.values())
        # A resource this batch creates exists once it is written: only the others are looked up
        # (a chunk's Provenance names its thousand new Observations).
        new = {(c.res_type, c.res_id) for c in batch.creates}
        refs = sorted(batch.refs - new)
        try:
            if total < COPY_MIN_ROWS:
                # The n-th create's key is -n until the sequence gives the real one (in the statement).
                rows = _rows(batch, [-(i + 1) for i in range(n)])
                if _finite(rows[3]):
                    found = self._one_statement(raw, n, *rows, refs)
                else:
                    found = self._copy_all(raw, batch, refs)
            else:
                found = self._copy_all(raw, batch, refs)
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name == "uq_resource_type_id":
                raise DuplicateId() from None
            raise
        return found | (batch.refs & new)

    def _one_statement(
        self,
        raw: psycopg.Connection[Any],
        n: int,
        resources: list[Row],
        versions: list[Row],
        stale: list[int],
        index: dict[str, list[Row]],
        refs: list[tuple[str, str]],
    ) -> set[tuple[str, str]]:
        """The whole flush as ONE statement of data-modifying CTEs (one round trip); see below."""
        # Keys from the sequence, stale index rows out, rows in, then the references that exist. All
        # parts see the snapshot from before the statement, so the DELETEs never see the rows the
        # INSERTs add. Each table's rows travel as ONE json parameter (orjson, C speed), so the
        # statement text depends only on which tables get rows: psycopg caches its parsing and
        # prepares it, and the server plans it once per connection.
        tables = [("resource", resources), ("resource_version", versions)]
        tables += [(t.INDEX_TABLES[kind].name, rows) for kind, rows in index.items() if rows]
        tables = [(name, rows) for name, rows in tables if rows]
        params: list[Any] = [self.sequence, n] if n else []
        if stale:
            params.append(orjson.dumps(stale).decode())
        for _, rows in tables:
            params.append(orjson.dumps(rows, default=_json_default).decode())
        if refs:
            params.append(orjson.dumps(refs).decode())
        shape = (n > 0, bool(stale), tuple(name for name, _ in tables), bool(refs))
        sql = self.statements.get(shape)
        if sql is None:
            sql = self.statements[shape] = self._statement(*shape)
        return {(row[0], row[1]) for row in raw.execute(sql, params).fetchall()}

    def _statement(self, creates: bool, stale: bool, names: tuple[str, ...], refs: bool) -> str:
        """The SQL of one flush shape (see `_one_statement`)."""
        parts: list[str] = []
        if creates:
            parts.append("k AS (SELECT n, nextval(%s::regclass) AS pk FROM generate_series(1, %s) AS n)")
        if stale:
            parts.append("s AS (SELECT json_array_elements_text(%s::json)::int8 AS pk)")
            parts += [f"d{i} AS ({sql})" for i, sql in enumerate(self.delete)]
        for i, name in enumerate(names):
            cols = self.tables[name]
            values = [_from_json(j, ty) for j, ty in enumerate(self.types[name])]
            values[0] = f"COALESCE(k.pk, {values[0]})" if creates else values[0]
            join = f" LEFT JOIN k ON k.n = -{_from_json(0, 'int8')}" if creates else ""
            order = " ORDER BY o" if name == "resource_version" else ""  # versions keep their order
            parts.append(
                f"i{i} AS (INSERT INTO {name} ({', '.join(cols)}) SELECT {', '.join(values)} "
                f"FROM json_array_elements(%s::json) WITH ORDINALITY AS a(e, o){join}{order})"
            )
        if refs:
            tail = self.refs_sql + "(SELECT e->>0, e->>1 FROM json_array_elements(%s::json) AS e)"
        else:
            tail = "SELECT NULL::text, NULL::text WHERE false"
        return ("WITH " + ", ".join(parts) + " " if parts else "") + tail

    def _copy_all(
        self, raw: psycopg.Connection[Any], batch: Batch, refs: list[tuple[str, str]]
    ) -> set[tuple[str, str]]:
        """A large flush: keys, stale rows out, then binary COPY per table, then the reference check."""
        pks: list[int] = []
        if batch.creates:
            cur = raw.execute(
                "SELECT nextval(%s::regclass) FROM generate_series(1, %s)",
                (self.sequence, len(batch.creates)),
            )
            pks = sorted(r[0] for r in cur.fetchall())
        resources, versions, stale, index = _rows(batch, pks)
        if stale:
            deletes = ", ".join(f"d{i} AS ({sql})" for i, sql in enumerate(self.delete))
            raw.execute(
                f"WITH s AS (SELECT json_array_elements_text(%s::json)::int8 AS pk), {deletes} SELECT 1",
                [orjson.dumps(stale).decode()],
            )
        self._copy(raw, "resource", resources)
        self._copy(raw, "resource_version", versions)
        for kind, kind_rows in index.items():
            self._copy(raw, t.INDEX_TABLES[kind].name, _floats(kind, kind_rows))
        found: set[tuple[str, str]] = set()
        for i in range(0, len(refs), 500):
            chunk = refs[i : i + 500]
            sql = self.refs_sql + "(VALUES " + ", ".join(["(%s::text, %s::text)"] * len(chunk)) + ")"
            found.update((r[0], r[1]) for r in raw.execute(sql, [v for ref in chunk for v in ref]).fetchall())
        return found

    def write_quiet(self, conn: Connection, creates: list[NewResource], context: int) -> None:
        """New resources whose versions are not change events (`outbox.QUIET_XID`): the audit
        trail's AuditEvents. Keys in one statement, then one binary COPY per table."""
        raw = _raw(conn)
        if self.sequence is None:
            row = raw.execute("SELECT pg_get_serial_sequence('resource', 'pk')").fetchone()
            self.sequence = str(row[0]) if row else "resource_pk_seq"
        cur = raw.execute(
            "SELECT nextval(%s::regclass) FROM generate_series(1, %s)", (self.sequence, len(creates))
        )
        pks = sorted(r[0] for r in cur.fetchall())
        resources, versions, _, index = _rows(Batch(creates, context=context), pks)
        self._copy(raw, "resource", resources)
        quiet = outbox.QUIET_XID_POSTGRES
        self._copy(raw, "resource_version", [(*v, quiet) for v in versions], "quiet_version")
        for kind, kind_rows in index.items():
            self._copy(raw, t.INDEX_TABLES[kind].name, _floats(kind, kind_rows))

    def _copy(self, raw: psycopg.Connection[Any], name: str, rows: list[Row], sql: str = "") -> None:
        if not rows:
            return
        with raw.cursor() as cur, cur.copy(self.copy_sql[sql or name]) as copy:
            copy.set_types(self.types[sql or name])
            for row in rows:
                copy.write_row(row)


class _Sqlite:
    """SQLite (sqlite3, in-process: statements are cheap, round trips do not exist)."""

    def __init__(self) -> None:
        def insert(name: str, cols: Iterable[str]) -> str:
            cols = list(cols)
            return f"INSERT INTO {name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"

        self.resource_sql = insert("resource", RESOURCE_COLUMNS[1:])
        self.version_sql = insert("resource_version", VERSION_COLUMNS)
        self.quiet_version_sql = insert("resource_version", (*VERSION_COLUMNS, "xid"))
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
            new = {(c.res_type, c.res_id) for c in batch.creates}
            others = batch.refs - new  # what this batch creates exists
            found = {ref for ref in others if cur.execute(self.ref_sql, ref).fetchone() is not None}
            return found | (batch.refs & new)
        finally:
            cur.close()

    def write_quiet(self, conn: Connection, creates: list[NewResource], context: int) -> None:
        """New resources whose versions are not change events (`outbox.QUIET_XID`): the audit
        trail's AuditEvents."""
        cur = _raw(conn).cursor()
        try:
            pks = []
            for c in creates:
                cur.execute(self.resource_sql, (c.res_type, c.res_id, 1, c.last_updated, False, c.content))
                pks.append(cur.lastrowid)
            _, versions, _, index = _rows(Batch(creates, context=context), pks)
            quiet = outbox.QUIET_XID_SQLITE
            cur.executemany(self.quiet_version_sql, [(*v, quiet) for v in versions])
            for kind, rows in index.items():
                cur.executemany(self.index_sql[kind], rows)
        finally:
            cur.close()


def _from_json(i: int, pg_type: str) -> str:
    """SQL for element `i` of the json array `e` as a column of `pg_type`."""
    if pg_type == "text":
        return f"e->>{i}"
    if pg_type == "bytea":
        return f"convert_to(e->>{i}, 'UTF8')"  # stored JSON is UTF-8 text
    return f"(e->>{i})::{pg_type}"


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()  # stored JSON (orjson output): always valid UTF-8
    raise TypeError(f"cannot send {type(value).__name__} as JSON")


def _finite(index: dict[str, list[Row]]) -> bool:
    """False when an index row holds a NaN or infinite float (JSON cannot carry those; COPY can)."""
    for kind, rows in index.items():
        for pos in _FLOAT_POS.get(kind, ()):
            for row in rows:
                value = row[pos]
                if value is not None and not math.isfinite(value):
                    return False
    return True


def raw_connection(conn: Connection) -> Any:
    """The DBAPI connection under a SQLAlchemy connection."""
    return conn.connection.driver_connection


_raw = raw_connection


Sql = _Postgres | _Sqlite


def for_dialect(sqlite: bool) -> Sql:
    """The hot-path SQL of one backend."""
    return _Sqlite() if sqlite else _Postgres()
