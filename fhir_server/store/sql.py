"""The SQL store: one database transaction per FHIR interaction or transaction Bundle.

Resources, versions and index rows are written in ONE transaction (ARCHITECTURE.md section 3).
Creates are buffered and written in batches when the transaction flushes, which happens before any
read in the same transaction and before commit, so a transaction Bundle of hundreds of entries
costs a handful of statements (store/fast.py: one pipeline, or COPY, on PostgreSQL). Updates are
optimistic: the UPDATE names the version that was read, so two writers can never both succeed on
the same version (https://hl7.org/fhir/R4/http.html#concurrency). Reads on PostgreSQL run without
BEGIN/COMMIT (autocommit; each statement sees the data committed when it starts, as READ COMMITTED
transactions do), so a read by id is one round trip.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from sqlalchemy import Connection, CursorResult, Engine, Executable, func, select, text

from .. import instant, references
from ..errors import Conflict, Issue, Unprocessable
from ..references import local_target, walk
from ..search.index import index_tuples
from . import autoanalyze, contention, fast, outbox, unprepared
from . import tables as t
from .engine import is_sqlite
from .replicas import ReadRouting

T = TypeVar("T")


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


# The UUID variant bits (RFC 4122: 10xx) set in the high nibble of byte 8, by that hex digit.
_VARIANT = {d: "89ab"[int(d, 16) & 0x3] for d in "0123456789abcdef"}


def new_id() -> str:
    """A server-assigned logical id: a time-ordered (version 7) UUID (https://www.rfc-editor.org/rfc/rfc9562#section-5.7).

    The first 48 bits are the Unix time in milliseconds, 74 of the rest random (`os.urandom`; a
    version 4 UUID has 122): still far beyond guessing, and resources created together have
    neighbouring ids, so inserting them touches a few pages of `uq_resource_type_id` (and of the
    reference indexes of whatever names them) instead of a random page each, which matters once
    those indexes outgrow shared buffers (bench/README.md "Fifteenth session"). An id tells when
    the server created the resource, as version 1's `meta.lastUpdated` does. Formatted without a
    UUID object; the random bits come from `_random10`."""
    t = f"{time.time_ns() // 1_000_000:012x}"
    h = _random10().hex()
    return f"{t[:8]}-{t[8:]}-7{h[:3]}-{_VARIANT[h[3]]}{h[4:7]}-{h[7:19]}"


_LOCK_ALL = text(
    "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtextextended(k, 0) AS h"
    " FROM json_array_elements_text(CAST(:keys AS json)) AS k ORDER BY h) AS ordered"
)


class _RandomPool(threading.local):
    """One thread's `os.urandom` bytes not handed out yet."""

    def __init__(self) -> None:
        self.data, self.at = b"", 0


_POOL_BYTES = 4000  # 400 ids per os.urandom call
_pool = _RandomPool()


def _random10() -> bytes:
    """10 bytes of `os.urandom`, taken from a per-thread pool refilled 4,000 bytes at a time.

    `os.urandom` releases the GIL for its system call: once per id, a thread creating a chunk of a
    thousand resources handed the GIL to the other threads a thousand times, and waited up to the
    switch interval for it each time (2.6% of an ingest's samples sat there, bench/README.md
    "Sixteenth session"). The bytes are the same CSPRNG's; a forked child starts with an empty
    pool (`os.register_at_fork`), so parent and child never hand out the same bytes."""
    pool = _pool
    at = pool.at
    if at + 10 > len(pool.data):
        pool.data, at = os.urandom(_POOL_BYTES), 0
    pool.at = at + 10
    return pool.data[at : at + 10]


def _forget_pool() -> None:
    global _pool
    _pool = _RandomPool()


os.register_at_fork(after_in_child=_forget_pool)


def serialise(resource: dict[str, Any], rid: str, version: int, last_updated: int) -> bytes:
    """The stored JSON: resourceType, id and meta first, meta.versionId/lastUpdated set by the server."""
    return orjson.dumps(_as_stored(resource, rid, version, last_updated))


_second: tuple[int, str] = (-1, "")  # the last second _to_fhir formatted, and its text (immutable)


def _to_fhir(us: int) -> str:
    """instant.to_fhir, formatting each second once (strftime is slow; a bundle shares its second)."""
    global _second
    seconds, micro = divmod(us, 1_000_000)
    cached = _second  # threads see the old pair or the new one, never a mix
    if cached[0] != seconds:
        cached = (seconds, instant.to_fhir(seconds * 1_000_000)[:-8])  # without ".000000Z"
        _second = cached
    return f"{cached[1]}.{micro:06d}Z"


def _as_stored(resource: dict[str, Any], rid: str, version: int, last_updated: int) -> dict[str, Any]:
    """The resource as stored (what `serialise` writes); shares the unchanged values with `resource`."""
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = _to_fhir(last_updated)
    out: dict[str, Any] = {"resourceType": resource["resourceType"], "id": rid, "meta": meta}
    for key, value in resource.items():
        if key not in out:
            out[key] = value
    return out


# A transaction's or a chunk's resources name the same few targets (their patient, device...).
_remembered_target = functools.lru_cache(maxsize=4096)(local_target)
_REMEMBERED_LENGTH = 200  # longer references are parsed each time: the table's size stays bounded


def _local_target(reference: str, base: str) -> tuple[str, str] | None:
    if len(reference) > _REMEMBERED_LENGTH:
        return local_target(reference, base)
    return _remembered_target(reference, base)


@dataclass(slots=True)
class _RefCheck:
    """A reference a write made to a resource on this server: the `n`-th of
    `references.values_of_text` of the stored resource `content`. Its FHIRPath is found only for
    the message when it fails."""

    target: tuple[str, str]
    res_type: str
    content: bytes
    n: int

    @property
    def path(self) -> str:
        # The text's order may differ from the walk's (a member before its "reference" sibling):
        # the k-th reference with this text in one is the k-th in the other.
        resource = orjson.loads(self.content)
        texts = references.values_of_text(self.content, resource)
        reference = texts[self.n]
        k = texts[: self.n].count(reference)
        found = [at for element, at in walk(resource, self.res_type) if element["reference"] == reference]
        return f"{found[k]}.reference"


@dataclass
class Tx:
    """A unit of work on one connection; see module docstring."""

    conn: Connection
    check_references: bool = True
    base: str = ""
    writable: bool = False
    sql: fast.Sql | None = None
    # Of the existing reference targets, those the caller may see (None: all); auth/enforce.py sets
    # it, and a hidden target is refused like an unknown one (references are no existence oracle).
    visible: Callable[[Tx, set[tuple[str, str]]], set[tuple[str, str]]] | None = None
    _creates: list[fast.NewResource] = field(default_factory=list)
    _quiet: list[fast.NewResource] = field(default_factory=list)  # `record`: no change events
    _reindex: list[tuple[int, fast.IndexRows]] = field(default_factory=list)
    _versions: list[tuple[Any, ...]] = field(default_factory=list)
    _refs: list[_RefCheck] = field(default_factory=list)
    _now: int = 0
    # Rows written, counted for the background ANALYZE once the transaction commits (autoanalyze.py).
    changes: autoanalyze.Changes = field(default_factory=autoanalyze.Changes)
    # Where this write comes from and who makes it: recorded with every version (store/outbox.py).
    context: outbox.WriteContext = outbox.SERVER
    contexts: outbox.ContextIds | None = None  # the store's known write_context rows
    new_context: int | None = None  # the write_context row this transaction inserted
    wrote_versions: bool = False
    _context_pk: int | None = None
    # What the layers above look up once per unit of work (e.g. stored profiles by url).
    memo: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.sql is None:
            self.sql = fast.for_dialect(self.conn.dialect.name == "sqlite")

    # ---------- reads ----------
    def current(self, res_type: str, res_id: str) -> Stored | None:
        """The current version (possibly a deletion marker) or None if it never existed."""
        self.flush(check_references=False)
        assert self.sql is not None
        row = self.sql.current(self.conn, res_type, res_id)
        if row is None:
            return None
        pk, rtype, rid, version, last_updated, deleted, content = row
        return Stored(rtype, rid, version, last_updated, deleted, content, pk)

    def current_by_pks(self, pks: Iterable[int]) -> list[Stored]:
        """Current versions for surrogate keys, in the order given."""
        self.flush(check_references=False)
        keys = list(pks)
        if not keys:
            return []
        rows = self.conn.execute(select(*_COLS).where(t.resource.c.pk.in_(keys))).all()
        by_pk = {r.pk: _row_to_stored(r) for r in rows}
        return [by_pk[k] for k in keys if k in by_pk]

    def current_of_type(self, res_type: str, *, limit: int) -> list[Stored]:
        """The first `limit` live resources of a type, by id (a picker's list)."""
        self.flush(check_references=False)
        r = t.resource.c
        stmt = (
            select(*_COLS).where(r.res_type == res_type, r.deleted.is_(False)).order_by(r.res_id).limit(limit)
        )
        return [_row_to_stored(row) for row in self.conn.execute(stmt)]

    def version(self, res_type: str, res_id: str, version: int) -> Stored | None:
        """A specific version (vread)."""
        if not 0 < version < 2**31:  # the column is 32 bits: PostgreSQL would refuse the comparison
            return None
        self.flush(check_references=False)
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

    def run_search(self, stmt: Executable, *, memory_mb: int | None = None) -> CursorResult[Any]:
        """Run a statement planned by search/ (a page, a count), unprepared on PostgreSQL; `memory_mb`:
        the memory its sorts and hashes may take (work_mem, for the rest of this transaction)."""
        return unprepared.execute(self.conn, stmt, memory_mb)

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
        self.flush(check_references=False)
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
        self.flush(check_references=False)
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
        as_stored = _as_stored(resource, rid, 1, ts)
        content = orjson.dumps(as_stored)
        stored = Stored(resource["resourceType"], rid, 1, ts, False, content, method=method)
        self._remember_refs(as_stored, content)
        # Indexing only reads: the dict gives the rows orjson.loads(content) would.
        self._creates.append(
            fast.NewResource(stored.res_type, rid, ts, content, index_tuples(as_stored), method)
        )
        return stored

    def record(self, resource: dict[str, Any], res_id: str, index: fast.IndexRows) -> Stored:
        """Create a resource the server records for itself, whose version is NO change event
        (store/outbox.py: consumers never see it): the audit trail's AuditEvents. `index` must be the
        rows `search.index.index_tuples` would give the stored resource (the caller derives them
        more cheaply; audit/event_index.py, with its oracle test). No reference is checked. Buffered
        and written by `flush` in bulk (COPY on PostgreSQL); vread and history find it as usual."""
        ts = self.now()
        content = orjson.dumps(_as_stored(resource, res_id, 1, ts))
        self._quiet.append(fast.NewResource(resource["resourceType"], res_id, ts, content, index, "POST"))
        return Stored(resource["resourceType"], res_id, 1, ts, False, content, method="POST")

    def update(self, prev: Stored, resource: dict[str, Any], method: str = "PUT") -> Stored:
        """Write a new version on top of `prev` (current or deleted); VersionConflict if it moved on."""
        ts = self.now()
        version = prev.version + 1
        as_stored = _as_stored(resource, prev.res_id, version, ts)
        content = orjson.dumps(as_stored)
        self._remember_refs(as_stored, content)
        self._write_version(prev, version, ts, False, content, method)
        self._reindex.append((prev.pk, index_tuples(as_stored)))
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
        assert self.sql is not None
        if not self.sql.bump(self.conn, prev.pk, prev.version, version, ts, deleted, content):
            raise VersionConflict(
                f"{prev.res_type}/{prev.res_id} was changed by someone else (version {prev.version} "
                "is no longer current)"
            )
        self._versions.append((prev.pk, prev.res_type, prev.res_id, version, ts, deleted, method, content))

    def _remember_refs(self, stored: dict[str, Any], content: bytes) -> None:
        """Note the local references of a resource written as `stored` (serialised: `content`)."""
        if not self.check_references:
            return
        base = self.base
        for n, reference in enumerate(references.values_of_text(content, stored)):
            target = _local_target(reference, base)
            if target is not None:
                self._refs.append(_RefCheck(target, stored["resourceType"], content, n))

    def flush(self, check_references: bool = True) -> None:
        """Write buffered creates, versions and index rows; check buffered references.

        ``check_references=False`` (reads and searches inside the transaction) leaves the reference
        checks for the flush that ends the transaction, so an entry of a transaction Bundle may
        refer to a resource that a later entry creates.
        """
        if not self.writable:
            return
        if self._quiet:
            quiet, self._quiet = self._quiet, []
            assert self.sql is not None
            self.sql.write_quiet(self.conn, quiet, self._context_id())
            self.changes.add(fast.Batch(quiet), recorded=True)
        refs: list[_RefCheck] = []
        if check_references:
            refs, self._refs = self._refs, []
        if not (self._creates or self._versions or self._reindex or refs):
            return
        # Stale index rows of updated resources go first; a resource created and updated in one
        # transaction was flushed (with its first rows) before the update read it.
        batch = fast.Batch(self._creates, self._versions, self._reindex, {r.target for r in refs})
        self._creates, self._versions, self._reindex = [], [], []
        assert self.sql is not None
        try:
            found = self.write_batch(batch)
        except fast.DuplicateId:
            raise Conflict("A resource with this id was created concurrently; retry") from None
        if self.visible is not None and refs:
            found = self.visible(self, found & batch.refs)
        missing = [] if batch.refs <= found else [ref for ref in refs if ref.target not in found]
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

    def write_batch(self, batch: fast.Batch) -> set[tuple[str, str]]:
        """Write resource rows, versions and index rows: every stored version goes through here
        (REST, Bundles, $import, $ingest), stamped with this transaction's write context, which
        makes each version row its change event (store/outbox.py). Returns the references found."""
        assert self.sql is not None
        if batch.creates or batch.versions:
            batch.context = self._context_id()
        found = self.sql.write(self.conn, batch)
        self.changes.add(batch)
        self.wrote_versions = self.wrote_versions or bool(batch.creates or batch.versions)
        return found

    def _context_id(self) -> int:
        if self._context_pk is None:
            known = self.contexts.get(self.context) if self.contexts is not None else None
            if known is None:
                known = self.new_context = outbox.ContextIds.insert(self.conn, self.context)
            self._context_pk = known
        return self._context_pk


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
        self.sql = fast.for_dialect(self.sqlite)
        self._writers: AbstractContextManager[Any] = threading.RLock() if self.sqlite else nullcontext()
        # PostgreSQL reads: no BEGIN/COMMIT round trips (server-side cursors need engine.connect()).
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.analyzer = autoanalyze.analyzer(engine)  # planner statistics after bulk writes
        self.contexts = outbox.ContextIds()
        # Called after each commit that stored versions (fhir_server/events wakes its dispatcher).
        self.after_commit: list[Callable[[], None]] = []
        # Read replicas (store/replicas.py): set by `use_replicas`; None reads on the primary.
        self.replicas: ReadRouting | None = None

    def use_replicas(self, routing: ReadRouting) -> None:
        """Send FHIR reads and searches to `routing`'s replicas (PostgreSQL only)."""
        if self.sqlite:
            raise ValueError("read replicas need a PostgreSQL primary (FHIR_DATABASE_URL is SQLite)")
        self.replicas = routing

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read-only unit of work: a snapshot transaction on SQLite, autocommit on PostgreSQL."""
        with self._read_connection() as conn:
            yield Tx(conn, self.check_references, self.base, writable=False, sql=self.sql)

    @contextmanager
    def _read_connection(self) -> Iterator[Connection]:
        if self.sqlite:
            with self.engine.connect() as conn, conn.begin():
                yield conn
            return
        if self.replicas is not None:
            with self.replicas.connection() as conn:
                yield conn
            return
        with self._autocommit.connect() as conn:
            yield conn

    @contextmanager
    def write(self, context: outbox.WriteContext = outbox.SERVER) -> Iterator[Tx]:
        """A write transaction: committed when the block ends, rolled back on any exception.

        `context` (where the write comes from, who makes it) goes with every version it stores."""
        # SQLite has one writer at a time: this process's writers queue on a lock first, instead of
        # in SQLite's busy handler, which sleeps up to 100 ms between tries.
        # A deadlock, serialization failure or locked file is a 409 (contention.py), never a 500.
        with self._writers, contention.as_conflict():
            with self._write_connection() as conn:
                tx = Tx(conn, self.check_references, self.base, writable=True, sql=self.sql)
                tx.context, tx.contexts = context, self.contexts
                yield tx
                tx.flush()
            self.analyzer.committed(tx.changes)
            if self.replicas is not None:
                self.replicas.wrote()  # read-your-writes: the caller reads the primary for a while
            if tx.new_context is not None:
                self.contexts.remember(context, tx.new_context)
            if tx.wrote_versions:
                for hook in self.after_commit:
                    hook()

    @contextmanager
    def _write_connection(self) -> Iterator[Connection]:
        """A connection in a write transaction, committed when the block ends without an exception."""
        with self.engine.connect() as conn:
            if self.sqlite:
                conn.info["sqlite_begin"] = "BEGIN IMMEDIATE"
            try:
                with conn.begin():
                    yield conn
            finally:
                conn.info.pop("sqlite_begin", None)

    def lock(self, tx: Tx, key: str) -> None:
        """Serialise writers on `key` until the transaction ends (conditional create/update races)."""
        if self.sqlite:
            return  # BEGIN IMMEDIATE already serialises every writer
        tx.conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key})

    def lock_all(self, tx: Tx, keys: Iterable[str]) -> None:
        """`lock` every key in ONE fixed order (by lock hash), before anything is written, so writers
        locking overlapping sets queue instead of deadlocking; locking a held key again is free.
        The keys travel as one JSON array (orjson): psycopg dumps a list parameter in Python, which
        was 2% of an ingest's GIL time for its 2,000 keys per chunk."""
        unique = sorted(set(keys))
        if self.sqlite or not unique:
            return
        tx.conn.execute(_LOCK_ALL, {"keys": orjson.dumps(unique).decode()})

    def transact(self, work: Callable[[Tx], T], context: outbox.WriteContext = outbox.SERVER) -> T:
        """`work(tx)` in a write transaction, run again from scratch when contention rolled it back
        (contention.py); `work` must rebuild everything it writes from unchanged inputs."""

        def attempt() -> T:
            with self.write(context) as tx:
                return work(tx)

        return contention.retrying(attempt)
