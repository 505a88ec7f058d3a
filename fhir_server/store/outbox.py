"""Change events: every stored resource version is one, kept in the same database transaction as the data.

The transactional outbox (https://microservices.io/patterns/data/transactional-outbox.html) is the
`resource_version` table itself: each row is a version, and with its `context` (a `write_context`
row: where the write came from, who made it) it is the change event of that version, written in the
same transaction, so a rolled-back write leaves no event. The interaction (create, update, patch,
delete; https://hl7.org/fhir/R4/http.html) follows from the row's method, version and deleted flag.

Consumers (fhir_server/events) read events after their position, kept in `change_consumer`:
- SQLite has one writer at a time, so `txn` order is commit order: the position is the last txn.
- PostgreSQL hands out `txn` values before commit, so a lower txn can commit after a higher one was
  read. Each row records the id of the transaction that wrote it (`xid`, a column default), and only
  rows of transactions older than every transaction still running are read
  (`xid < pg_snapshot_xmin(pg_current_snapshot())`,
  https://www.postgresql.org/docs/15/functions-info.html#FUNCTIONS-PG-SNAPSHOT), in (xid, txn)
  order: the position is (xid, txn), and no event can appear behind it later.

A version written quietly (`Tx.record`: the AuditEvents the audit trail records) is no change event:
its `xid` is NULL on PostgreSQL, where an event's is the writer's transaction id, and -1 on SQLite,
where an event's is NULL (`QUIET_XID_*`); every read here leaves it out, and the partial index
`ix_version_xid` holds events only, so a consumer's look never walks past quiet rows.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, and_, insert, select, text, tuple_, update

from . import tables as t

Position = tuple[int, int]  # (xid, txn); xid is 0 on SQLite
QUIET_XID_POSTGRES: int | None = None  # resource_version.xid of a version that is no change event
QUIET_XID_SQLITE = -1
START: Position = (0, 0)
_CONTEXT_CACHE = 4096  # distinct write contexts remembered per store (ids of committed rows)


@dataclass(frozen=True, slots=True)
class WriteContext:
    """Where a write came from and who made it: recorded with every version the write stores.

    `source` is its kind, then after a colon the Bundle or job it came from: "rest",
    "transaction:<Bundle id>", "batch:<Bundle id>", "import:<job id>", "ingest:<job id>", "server".
    """

    source: str = "server"
    client_id: str | None = None
    subject: str | None = None
    fhir_user: str | None = None
    patient: str | None = None

    @classmethod
    def of(cls, source: str, who: Any = None) -> WriteContext:
        """The context of a write from `source` by `who`: an authenticated principal or a job's
        requester (anything with client_id, subject, fhir_user, patient), or None (the server)."""
        if who is None:
            return cls(source)
        return cls(source, who.client_id, who.subject, who.fhir_user, who.patient)


SERVER = WriteContext()


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One committed resource version, as a consumer receives it."""

    res_type: str
    res_id: str
    version: int
    interaction: str  # create, update, patch, delete
    last_updated: int  # microseconds since the epoch
    context: WriteContext
    position: Position

    @property
    def source_kind(self) -> str:
        """The source without the Bundle or job id: rest, transaction, batch, import, ingest, server."""
        return self.context.source.partition(":")[0]


def interaction(method: str, version: int, deleted: bool) -> str:
    """The FHIR interaction that wrote a version, from what `resource_version` records."""
    if deleted:
        return "delete"
    if method == "PATCH":
        return "patch"
    return "create" if version == 1 else "update"


class ContextIds:
    """The `write_context` row of each context a store has written with, found or inserted once.

    A row inserted by a transaction is remembered only after that transaction committed
    (`remember`): an id from a rolled-back insert is never handed out again."""

    def __init__(self) -> None:
        self._ids: dict[WriteContext, int] = {}
        self._lock = threading.Lock()

    def get(self, context: WriteContext) -> int | None:
        return self._ids.get(context)

    def remember(self, context: WriteContext, pk: int) -> None:
        with self._lock:
            if len(self._ids) >= _CONTEXT_CACHE:
                self._ids.clear()
            self._ids[context] = pk

    @staticmethod
    def insert(conn: Connection, context: WriteContext) -> int:
        """A new `write_context` row for `context`, in the caller's transaction."""
        c = t.write_context.c
        values = {
            "source": context.source[:200],
            "client_id": context.client_id,
            "subject": context.subject,
            "fhir_user": context.fhir_user,
            "patient": context.patient,
        }
        return int(conn.execute(insert(t.write_context).values(values).returning(c.id)).scalar_one())


_V = t.resource_version.c
_C = t.write_context.c
_EVENT_COLUMNS = (
    _V.txn,
    _V.xid,
    _V.res_type,
    _V.res_id,
    _V.version,
    _V.last_updated,
    _V.deleted,
    _V.method,
    _C.source,
    _C.client_id,
    _C.subject,
    _C.fhir_user,
    _C.patient,
)
_VISIBLE = text("xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint")


def _after(position: Position, sqlite: bool) -> Any:
    """The WHERE clause of the committed events after `position` (see the module docstring)."""
    xid, txn = position
    if sqlite:
        return and_(_V.xid.is_(None), _V.txn > txn)
    # A row comparison: PostgreSQL starts the scan of `ix_version_xid` (xid, txn) AT the position.
    # Written as `xid > :xid OR (xid = :xid AND txn > :txn)` it walked every event before the
    # position (or fetched and sorted every event after it) for each batch of 500.
    return and_(_V.xid.is_not(None), tuple_(_V.xid, _V.txn) > tuple_(xid, txn), _VISIBLE)


def events_query(position: Position, limit: int, sqlite: bool) -> Select[Any]:
    """The statement `events_after` runs: the events after `position`, in delivery order."""
    q = select(*_EVENT_COLUMNS).join_from(t.resource_version, t.write_context, _C.id == _V.context)
    q = q.where(_after(position, sqlite))
    q = q.order_by(_V.txn) if sqlite else q.order_by(_V.xid, _V.txn)
    return q.limit(limit)


def events_after(conn: Connection, position: Position, limit: int) -> list[ChangeEvent]:
    """Up to `limit` committed events after `position`, in delivery order (see module docstring)."""
    rows = conn.execute(events_query(position, limit, conn.dialect.name == "sqlite")).all()
    contexts: dict[tuple[Any, ...], WriteContext] = {}  # a batch has a few: one object each
    out: list[ChangeEvent] = []
    for txn, xid, res_type, res_id, version, last_updated, deleted, method, *who in rows:
        key = tuple(who)
        context = contexts.get(key)
        if context is None:
            context = contexts[key] = WriteContext(*key)
        out.append(
            ChangeEvent(
                res_type,
                res_id,
                version,
                interaction(method, version, deleted),
                last_updated,
                context,
                (xid or 0, txn),
            )
        )
    return out


# `_after` as fixed SQL: a dispatcher runs this probe at every look, and building and compiling
# the expression cost twice the query itself.
_ANY_AFTER_SQLITE = text("SELECT 1 FROM resource_version WHERE xid IS NULL AND txn > :txn LIMIT 1")
_ANY_AFTER_POSTGRES = text(
    "SELECT 1 FROM resource_version WHERE xid IS NOT NULL"
    " AND (xid, txn) > (:xid, :txn)"
    " AND xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint LIMIT 1"
)


def any_after(conn: Connection, position: Position) -> bool:
    """Whether a committed event follows `position` (as `events_after` reads them): one index
    probe, no lock, no write (a dispatcher's look that finds nothing costs only this)."""
    probe = _ANY_AFTER_SQLITE if conn.dialect.name == "sqlite" else _ANY_AFTER_POSTGRES
    return conn.execute(probe, {"xid": position[0], "txn": position[1]}).first() is not None


def claim(conn: Connection, consumer: str) -> Position:
    """The consumer's position, its row locked until the transaction ends (one delivery at a time);
    a consumer seen for the first time starts before the first event."""
    c = t.change_consumer.c
    query = select(c.xid, c.txn).where(c.name == consumer)
    if conn.dialect.name != "sqlite":
        locked = conn.execute(query.with_for_update()).first()
        if locked is None:  # the first claim ever: insert the row (another process may race us)
            conn.execute(
                text(
                    "INSERT INTO change_consumer (name, xid, txn) VALUES (:n, 0, 0) "
                    "ON CONFLICT (name) DO NOTHING"
                ),
                {"n": consumer},
            )
            locked = conn.execute(query.with_for_update()).one()
        return (int(locked.xid), int(locked.txn))
    row = conn.execute(query).first()  # the caller's BEGIN IMMEDIATE already excludes other writers
    if row is None:
        conn.execute(insert(t.change_consumer).values(name=consumer, xid=0, txn=0))
        return START
    return (int(row.xid), int(row.txn))


def advance(conn: Connection, consumer: str, position: Position) -> None:
    """Move the consumer (claimed in this transaction) past `position`."""
    c = t.change_consumer.c
    conn.execute(update(t.change_consumer).where(c.name == consumer).values(xid=position[0], txn=position[1]))


def position(conn: Connection, consumer: str) -> Position | None:
    """The consumer's position, or None if it has never been claimed."""
    c = t.change_consumer.c
    row = conn.execute(select(c.xid, c.txn).where(c.name == consumer)).first()
    return None if row is None else (int(row.xid), int(row.txn))


# The versions of a batch of txns: on PostgreSQL ONE bigint[] parameter (`= ANY`), fixed SQL; an IN
# list of 500 expanded by SQLAlchemy and converted by psycopg cost most of the call (7.9 ms of CPU
# per 1,000 versions, against 3.1 ms).
_CONTENTS_POSTGRES = text(
    "SELECT txn, content FROM resource_version WHERE txn = ANY(CAST(:txns AS bigint[]))"
)


def contents(conn: Connection, txns: list[int]) -> dict[int, bytes]:
    """The stored JSON of the versions with these `txn`s (empty bytes for a deletion)."""
    out: dict[int, bytes] = {}
    postgres = conn.dialect.name != "sqlite"
    for start in range(0, len(txns), 500):
        chunk = txns[start : start + 500]
        if postgres:
            rows = conn.execute(_CONTENTS_POSTGRES, {"txns": chunk})
        else:
            rows = conn.execute(select(_V.txn, _V.content).where(_V.txn.in_(chunk)))
        for txn, content in rows:  # tuples: a Row's attributes cost more than the rest of the loop
            out[int(txn)] = content if content.__class__ is bytes else bytes(content or b"")
    return out


_NEWEST_COMMITTED_POSTGRES = text(
    "SELECT xid, txn FROM resource_version WHERE xid IS NOT NULL"
    " AND xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
    " ORDER BY xid DESC, txn DESC LIMIT 1"
)


def newest_committed(conn: Connection) -> Position:
    """The position of the newest event `events_after` can read now (START when none): every event
    at or before it is committed, and every event committed later comes after it (on PostgreSQL an
    xid below the snapshot's xmin is finished, and a later one is above it)."""
    if conn.dialect.name == "sqlite":  # one writer: what is stored is committed
        return latest(conn)
    row = conn.execute(_NEWEST_COMMITTED_POSTGRES).first()
    return (int(row.xid), int(row.txn)) if row is not None else START


def latest(conn: Connection) -> Position:
    """The position of the newest event stored (committed or not yet visible), START when none."""
    if conn.dialect.name == "sqlite":
        txn = conn.execute(select(_V.txn).where(_V.xid.is_(None)).order_by(_V.txn.desc()).limit(1)).scalar()
        return (0, int(txn)) if txn is not None else START
    row = conn.execute(
        select(_V.xid, _V.txn).where(_V.xid.is_not(None)).order_by(_V.xid.desc(), _V.txn.desc()).limit(1)
    ).first()
    return (int(row.xid), int(row.txn)) if row is not None else START
