"""The SQL store: one database transaction per FHIR interaction or transaction Bundle.

Resources, versions and index rows are written in ONE transaction (ARCHITECTURE.md section 3).
Creates are buffered and written in batches (multi-row INSERT ... RETURNING) when the transaction
flushes, which happens before any read in the same transaction and before commit, so a transaction
Bundle of hundreds of entries costs a handful of statements. Updates are optimistic: the UPDATE
names the version that was read, so two writers can never both succeed on the same version
(https://hl7.org/fhir/R4/http.html#concurrency).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, delete, func, insert, select, text, tuple_, update
from sqlalchemy.exc import IntegrityError

from .. import instant
from ..errors import Conflict, Issue, Unprocessable
from ..references import local_target, walk
from ..search.index import index_rows
from . import tables as t
from .engine import is_sqlite


@dataclass(frozen=True, slots=True)
class Stored:
    """One version of a resource as stored: the bytes are what we serve."""

    res_type: str
    res_id: str
    version: int
    last_updated: int
    deleted: bool
    content: bytes
    pk: int = 0
    method: str = ""

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    def resource(self) -> dict[str, Any]:
        return orjson.loads(self.content)  # type: ignore[no-any-return,unused-ignore]


class VersionConflict(Conflict):
    """The version a writer read is no longer current (someone else wrote in between)."""


_COLS = (
    t.resource.c.pk,
    t.resource.c.res_type,
    t.resource.c.res_id,
    t.resource.c.version,
    t.resource.c.last_updated,
    t.resource.c.deleted,
    t.resource.c.content,
)


def _row_to_stored(row: Any) -> Stored:
    return Stored(
        res_type=row.res_type,
        res_id=row.res_id,
        version=row.version,
        last_updated=row.last_updated,
        deleted=row.deleted,
        content=row.content,
        pk=row.pk,
    )


def new_id() -> str:
    """A server-assigned logical id."""
    return str(uuid.uuid4())


def serialise(resource: dict[str, Any], rid: str, version: int, last_updated: int) -> bytes:
    """The stored JSON: resourceType, id and meta first, meta.versionId/lastUpdated set by the server."""
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = instant.to_fhir(last_updated)
    out: dict[str, Any] = {"resourceType": resource["resourceType"], "id": rid, "meta": meta}
    for key, value in resource.items():
        if key not in out:
            out[key] = value
    return orjson.dumps(out)


@dataclass
class _PendingCreate:
    row: dict[str, Any]
    index: dict[str, list[dict[str, Any]]]
    method: str


@dataclass
class _RefCheck:
    target: tuple[str, str]
    path: str


@dataclass
class Tx:
    """A unit of work on one connection; see module docstring."""

    conn: Connection
    check_references: bool = True
    base: str = ""
    writable: bool = False
    _creates: list[_PendingCreate] = field(default_factory=list)
    _reindex: list[tuple[int, dict[str, list[dict[str, Any]]]]] = field(default_factory=list)
    _versions: list[dict[str, Any]] = field(default_factory=list)
    _refs: list[_RefCheck] = field(default_factory=list)
    _now: int = 0

    # ---------- reads ----------
    def current(self, res_type: str, res_id: str) -> Stored | None:
        """The current version (possibly a deletion marker) or None if it never existed."""
        self.flush()
        row = self.conn.execute(
            select(*_COLS).where(t.resource.c.res_type == res_type, t.resource.c.res_id == res_id)
        ).first()
        return _row_to_stored(row) if row else None

    def current_by_pks(self, pks: Iterable[int]) -> list[Stored]:
        """Current versions for surrogate keys, in the order given."""
        self.flush()
        keys = list(pks)
        if not keys:
            return []
        rows = self.conn.execute(select(*_COLS).where(t.resource.c.pk.in_(keys))).all()
        by_pk = {r.pk: _row_to_stored(r) for r in rows}
        return [by_pk[k] for k in keys if k in by_pk]

    def version(self, res_type: str, res_id: str, version: int) -> Stored | None:
        """A specific version (vread)."""
        self.flush()
        v = t.resource_version.c
        row = self.conn.execute(
            select(
                v.resource_pk.label("pk"),
                v.res_type,
                v.res_id,
                v.version,
                v.last_updated,
                v.deleted,
                v.content,
            ).where(v.res_type == res_type, v.res_id == res_id, v.version == version)
        ).first()
        return _row_to_stored(row) if row else None

    def history(
        self,
        *,
        res_type: str | None = None,
        res_id: str | None = None,
        since: int | None = None,
        at: int | None = None,
        before_txn: int | None = None,
        limit: int = 50,
    ) -> list[tuple[int, Stored]]:
        """Versions newest first as (txn, version); keyset paging with `before_txn`."""
        self.flush()
        v = t.resource_version.c
        q = select(
            v.txn,
            v.resource_pk.label("pk"),
            v.res_type,
            v.res_id,
            v.version,
            v.last_updated,
            v.deleted,
            v.content,
            v.method,
        )
        if res_type is not None:
            q = q.where(v.res_type == res_type)
        if res_id is not None:
            q = q.where(v.res_id == res_id)
        if since is not None:
            q = q.where(v.last_updated >= since)
        if at is not None:
            newer = t.resource_version.alias("newer")
            q = q.where(v.last_updated <= at).where(
                ~select(newer.c.txn)
                .where(
                    newer.c.resource_pk == v.resource_pk,
                    newer.c.version > v.version,
                    newer.c.last_updated <= at,
                )
                .exists()
            )
        if before_txn is not None:
            q = q.where(v.txn < before_txn)
        q = q.order_by(v.txn.desc()).limit(limit)
        out = []
        for row in self.conn.execute(q):
            stored = _row_to_stored(row)
            out.append((row.txn, Stored(**{**_asdict(stored), "method": row.method})))
        return out

    def count_history(self, *, res_type: str | None = None, res_id: str | None = None) -> int:
        self.flush()
        v = t.resource_version.c
        q = select(func.count()).select_from(t.resource_version)
        if res_type is not None:
            q = q.where(v.res_type == res_type)
        if res_id is not None:
            q = q.where(v.res_id == res_id)
        return int(self.conn.execute(q).scalar_one())

    # ---------- writes ----------
    def now(self) -> int:
        """One timestamp per transaction, strictly increasing within it."""
        current = instant.now_us()
        self._now = max(current, self._now + 1)
        return self._now

    def create(self, resource: dict[str, Any], res_id: str | None = None, method: str = "POST") -> Stored:
        """Create a new resource (buffered until flush). The id must not exist yet."""
        rid = res_id or new_id()
        ts = self.now()
        content = serialise(resource, rid, 1, ts)
        stored = Stored(resource["resourceType"], rid, 1, ts, False, content, method=method)
        self._remember_refs(resource)
        self._creates.append(
            _PendingCreate(
                row={
                    "res_type": stored.res_type,
                    "res_id": rid,
                    "version": 1,
                    "last_updated": ts,
                    "deleted": False,
                    "content": content,
                },
                index=index_rows(orjson.loads(content)),
                method=method,
            )
        )
        return stored

    def update(self, prev: Stored, resource: dict[str, Any], method: str = "PUT") -> Stored:
        """Write a new version on top of `prev` (current or deleted); VersionConflict if it moved on."""
        ts = self.now()
        version = prev.version + 1
        content = serialise(resource, prev.res_id, version, ts)
        self._remember_refs(resource)
        self._write_version(prev, version, ts, False, content, method)
        self._reindex.append((prev.pk, index_rows(orjson.loads(content))))
        return Stored(prev.res_type, prev.res_id, version, ts, False, content, prev.pk, method)

    def delete(self, prev: Stored) -> Stored:
        """Mark the resource deleted with a new version (https://hl7.org/fhir/R4/http.html#delete)."""
        ts = self.now()
        version = prev.version + 1
        self._write_version(prev, version, ts, True, b"", "DELETE")
        self._reindex.append((prev.pk, {}))
        return Stored(prev.res_type, prev.res_id, version, ts, True, b"", prev.pk, "DELETE")

    def _write_version(
        self, prev: Stored, version: int, ts: int, deleted: bool, content: bytes, method: str
    ) -> None:
        r = t.resource.c
        result = self.conn.execute(
            update(t.resource)
            .where(r.pk == prev.pk, r.version == prev.version)
            .values(version=version, last_updated=ts, deleted=deleted, content=content)
        )
        if result.rowcount != 1:
            raise VersionConflict(
                f"{prev.res_type}/{prev.res_id} was changed by someone else (version {prev.version} "
                "is no longer current)"
            )
        self._versions.append(
            {
                "resource_pk": prev.pk,
                "res_type": prev.res_type,
                "res_id": prev.res_id,
                "version": version,
                "last_updated": ts,
                "deleted": deleted,
                "method": method,
                "content": content,
            }
        )

    def _remember_refs(self, resource: dict[str, Any]) -> None:
        if not self.check_references:
            return
        rtype = resource["resourceType"]
        for element, path in walk(resource, rtype):
            target = local_target(element["reference"], self.base)
            if target is not None:
                self._refs.append(_RefCheck(target, f"{path}.reference"))

    def flush(self, check_references: bool = True) -> None:
        """Write buffered creates, versions and index rows; check buffered references.

        ``check_references=False`` (a search inside the transaction) leaves the reference checks
        for a later flush, so an entry may refer to a resource the transaction creates after it.
        """
        if not self.writable:
            return
        if self._creates:
            creates, self._creates = self._creates, []
            try:
                pks = (
                    self.conn.execute(
                        insert(t.resource).returning(t.resource.c.pk, sort_by_parameter_order=True),
                        [c.row for c in creates],
                    )
                    .scalars()
                    .all()
                )
            except IntegrityError:
                raise Conflict("A resource with this id was created concurrently; retry") from None
            for pk, c in zip(pks, creates, strict=True):
                self._versions.append(
                    {"resource_pk": pk, "method": c.method, **{k: c.row[k] for k in _VERSION_KEYS}}
                )
                self._reindex.append((pk, c.index))
        if self._versions:
            versions, self._versions = self._versions, []
            self.conn.execute(insert(t.resource_version), versions)
        if self._reindex:
            reindex, self._reindex = self._reindex, []
            self._write_index(reindex)
        if self._refs and check_references:
            refs, self._refs = self._refs, []
            self._check_refs(refs)

    def _write_index(self, items: list[tuple[int, dict[str, list[dict[str, Any]]]]]) -> None:
        stale = [pk for pk, _ in items]
        # Creates have nothing stale, but a resource created and updated in one transaction does.
        for table in t.INDEX_TABLES.values():
            for chunk in _chunks(stale, 500):
                self.conn.execute(delete(table).where(table.c.resource_pk.in_(chunk)))
        rows: dict[str, list[dict[str, Any]]] = {}
        for pk, index in items:
            for kind, kind_rows in index.items():
                bucket = rows.setdefault(kind, [])
                for row in kind_rows:
                    bucket.append({"resource_pk": pk, **row})
        for kind, kind_rows in rows.items():
            if kind_rows:
                self.conn.execute(insert(t.INDEX_TABLES[kind]), kind_rows)

    def _check_refs(self, refs: list[_RefCheck]) -> None:
        wanted = {r.target for r in refs}
        found: set[tuple[str, str]] = set()
        r = t.resource.c
        for chunk in _chunks(sorted(wanted), 400):
            rows = self.conn.execute(
                select(r.res_type, r.res_id).where(
                    tuple_(r.res_type, r.res_id).in_(chunk), r.deleted.is_(False)
                )
            )
            found.update((row.res_type, row.res_id) for row in rows)
        missing = [ref for ref in refs if ref.target not in found]
        if missing:
            issues = [
                Issue(
                    f"Reference to {m.target[0]}/{m.target[1]}, which does not exist on this server",
                    "not-found",
                    (m.path,),
                )
                for m in missing
            ]
            raise Unprocessable(issues[0].message, issues=issues)


_VERSION_KEYS = ("res_type", "res_id", "version", "last_updated", "deleted", "content")


def _asdict(s: Stored) -> dict[str, Any]:
    return {f: getattr(s, f) for f in Stored.__slots__}


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class Store:
    """Opens read and write units of work on the engine."""

    def __init__(self, engine: Engine, *, check_references: bool = True, base: str = "") -> None:
        self.engine = engine
        self.check_references = check_references
        self.base = base
        self.sqlite = is_sqlite(engine)

    @contextmanager
    def read(self) -> Iterator[Tx]:
        with self.engine.connect() as conn, conn.begin():
            yield Tx(conn, self.check_references, self.base, writable=False)

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A write transaction: committed when the block ends, rolled back on any exception."""
        with self.engine.connect() as conn:
            if self.sqlite:
                conn.info["sqlite_begin"] = "BEGIN IMMEDIATE"
            try:
                with conn.begin():
                    tx = Tx(conn, self.check_references, self.base, writable=True)
                    yield tx
                    tx.flush()
            finally:
                conn.info.pop("sqlite_begin", None)

    def lock(self, tx: Tx, key: str) -> None:
        """Serialise writers on `key` until the transaction ends (conditional create/update races)."""
        if self.sqlite:
            return  # BEGIN IMMEDIATE already serialises every writer
        tx.conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key})
