"""Read replicas: FHIR reads and searches on PostgreSQL streaming replicas, writes on the primary (https://www.postgresql.org/docs/15/hot-standby.html).

`FHIR_DATABASE_READ_URLS` lists the replicas. `Store.read()` asks `ReadRouting.connection()` for a
connection: a replica only when the unit of work belongs to a FHIR request (`reader` is set by the API
for the caller), else the primary (authorization server, jobs, CLI: they act on what they just wrote).

Read-your-writes by pinning: after a caller's write commits, `wrote()` records, on the primary, that
its reads go to the primary until `replica_pin_seconds` have passed (`replica_pin`, shared by every API
process). A replica serves only while its replay lag, checked at most every `replica_check_seconds`,
is under `replica_max_lag_seconds`; with the pin longer than lag bound + check interval a writer never
reads a replica that misses its write. A replica that is down, lagging, not streaming or promoted is
skipped and reads fall back to the primary; each read counts its target and reason (`counts`, exposed
by /metrics) and each change of a replica's state is logged.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from sqlalchemy import BigInteger, Column, Connection, Engine, String, Table, text
from sqlalchemy.exc import DBAPIError

from .. import instant
from ..errors import FhirError
from ..settings import Settings
from .engine import make_engine
from .tables import metadata

log = logging.getLogger("fhir_server.replicas")

# Who reads: set by the API for a FHIR request (`reader_key(principal)`), None elsewhere.
reader: ContextVar[str | None] = ContextVar("fhir_replica_reader", default=None)

# Read targets and reasons (the labels of fhir_db_reads_total: a bounded set).
REASONS = ("replica", "pinned", "replica-down", "replica-lag", "not-a-request")

replica_pin = Table(
    "replica_pin",
    metadata,
    Column("reader", String(64), primary_key=True),  # sha256 of client id and user, never the ids
    Column("until_us", BigInteger, nullable=False),  # reads go to the primary until then
)

_HEALTH = text(
    "SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver LIMIT 1),"
    " pg_last_wal_receive_lsn() - '0/0'::pg_lsn, pg_last_wal_replay_lsn() - '0/0'::pg_lsn,"
    " extract(epoch FROM now() - pg_last_xact_replay_timestamp())"
)
_PINNED = text("SELECT until_us FROM replica_pin WHERE reader = :r")
_PIN = text(
    "INSERT INTO replica_pin (reader, until_us) VALUES (:r, :u)"
    " ON CONFLICT (reader) DO UPDATE SET until_us = GREATEST(replica_pin.until_us, EXCLUDED.until_us)"
)


class ReplicaLost(FhirError):
    """A read on a replica failed under way (replica gone, or a replay conflict): retry it."""

    status, code = 503, "transient"


def reader_key(client_id: str, subject: str | None) -> str:
    """The pin key of a caller: its client and user, hashed (the table holds no identifiers)."""
    return hashlib.sha256(f"{client_id}\x00{subject or ''}".encode()).hexdigest()


@dataclass
class Replica:
    """One replica's engine and its last observed state."""

    index: int
    engine: Engine
    state: str = "unchecked"  # "up", "down", "lagging", "not-streaming", "promoted"
    lag_seconds: float = 0.0
    checked_at: float = float("-inf")
    lock: threading.Lock = field(default_factory=threading.Lock)
    # (monotonic time, WAL received by then) of recent checks: what the replay lag is measured against
    received: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=1000))

    def lag(self, now: float, receive: int, replay: int, since_replayed_commit: float | None) -> float:
        """Seconds of WAL received but not replayed: 0 when replay has caught up with what arrived;
        else the age of the newest check whose received WAL is all replayed now (an idle primary
        writes no commits, so the time since the last replayed commit alone would overstate it)."""
        self.received.append((now, receive))
        if replay >= receive:
            return 0.0
        replayed_by = [t for t, lsn in self.received if lsn <= replay]
        if replayed_by:
            return now - max(replayed_by)
        return since_replayed_commit or 0.0


class ReadRouting:
    """Chooses the engine of each read: a healthy replica, or the primary (and says why)."""

    def __init__(
        self,
        primary: Engine,
        urls: Sequence[str],
        *,
        pin_seconds: float,
        max_lag_seconds: float,
        check_seconds: float,
        pool_size: int = 10,
        max_overflow: int = 20,
    ) -> None:
        self.primary = primary.execution_options(isolation_level="AUTOCOMMIT")
        self.pin_us = int(pin_seconds * 1_000_000)
        self.max_lag = max_lag_seconds
        self.check_seconds = check_seconds
        self.replicas = [
            Replica(
                i,
                make_engine(
                    url, pool_size=pool_size, max_overflow=max_overflow, pre_ping=True, connect_timeout=5
                ).execution_options(isolation_level="AUTOCOMMIT"),
            )
            for i, url in enumerate(urls)
        ]
        self._turn = itertools.count()
        self.counts: Counter[str] = Counter()  # reason -> reads
        self._counting = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """An autocommit connection for one read unit of work."""
        reason, replica = self._choose()
        if replica is not None:
            try:
                conn = replica.engine.connect()
            except DBAPIError as exc:
                self._set_state(replica, "down", f"connect failed ({type(exc.orig).__name__})")
                reason = "replica-down"
            else:
                self._count(reason)
                with conn:
                    try:
                        yield conn
                    except DBAPIError as exc:
                        lost = self._lost(replica, exc)
                        if lost is None:
                            raise
                        raise lost from exc
                return
        self._count(reason)
        with self.primary.connect() as conn:
            yield conn

    def _lost(self, replica: Replica, exc: DBAPIError) -> ReplicaLost | None:
        """A replica read that failed under way: the replica went away (it is taken out of service)
        or replay cancelled the query (a hot-standby conflict): 503 to retry, not a 500."""
        if exc.connection_invalidated:
            self._set_state(replica, "down", f"connection lost during a read ({type(exc.orig).__name__})")
        elif getattr(exc.orig, "sqlstate", None) != "40001":
            return None  # anything else is not the replica's doing
        return ReplicaLost(
            "The read replica answering this request went away or cancelled it; retry",
            headers={"Retry-After": "1"},
        )

    def wrote(self) -> None:
        """After a committed write: pin the request's caller to the primary for the pin window."""
        key = reader.get()
        if key is None:
            return
        with self.primary.connect() as conn:
            conn.execute(_PIN, {"r": key, "u": instant.now_us() + self.pin_us})

    def _choose(self) -> tuple[str, Replica | None]:
        key = reader.get()
        if key is None:
            return "not-a-request", None
        with self.primary.connect() as conn:
            until = conn.execute(_PINNED, {"r": key}).scalar()
        if until is not None and until > instant.now_us():
            return "pinned", None
        start = next(self._turn)
        worst = "replica-down"
        for k in range(len(self.replicas)):
            replica = self.replicas[(start + k) % len(self.replicas)]
            self._maybe_check(replica)
            if replica.state == "up":
                return "replica", replica
            if replica.state == "lagging":
                worst = "replica-lag"
        return worst, None

    def _maybe_check(self, replica: Replica) -> None:
        if self._fresh(replica):
            return
        # Another thread is checking: use the state as it was (but wait for the very first check).
        if not replica.lock.acquire(blocking=replica.state == "unchecked"):
            return
        try:
            if self._fresh(replica):
                return  # checked while this thread waited
            replica.checked_at = time.monotonic()
            try:
                with replica.engine.connect() as conn:
                    row = conn.execute(_HEALTH).one()
            except DBAPIError as exc:
                self._set_state(replica, "down", f"health check failed ({type(exc.orig).__name__})")
                return
            in_recovery, receiver, receive, replay, since_commit = row
            if receive is not None and replay is not None:
                since = None if since_commit is None else float(since_commit)
                replica.lag_seconds = replica.lag(time.monotonic(), int(receive), int(replay), since)
            if not in_recovery:
                self._set_state(replica, "promoted", "it is not in recovery: not a replica of the primary")
            elif receiver != "streaming":
                self._set_state(replica, "not-streaming", f"WAL receiver is {receiver or 'not running'}")
            elif replica.lag_seconds > self.max_lag:
                self._set_state(replica, "lagging", f"replay lag {replica.lag_seconds:.1f} s")
            else:
                self._set_state(replica, "up", "streaming")
        finally:
            replica.lock.release()

    def _count(self, reason: str) -> None:
        with self._counting:  # `+=` on a Counter is not atomic across threads
            self.counts[reason] += 1

    def _fresh(self, replica: Replica) -> bool:
        return replica.state != "unchecked" and time.monotonic() - replica.checked_at < self.check_seconds

    def _set_state(self, replica: Replica, state: str, why: str) -> None:
        replica.checked_at = time.monotonic()
        if state != replica.state:
            level = logging.INFO if state == "up" else logging.WARNING
            suffix = "" if state == "up" else ": reads fall back to the primary"
            log.log(level, "read replica %d is %s (%s)%s", replica.index, state, why, suffix)
        replica.state = state

    def dispose(self) -> None:
        for replica in self.replicas:
            replica.engine.dispose()


def routing(primary: Engine, settings: Settings) -> ReadRouting:
    """The routing of `settings.read_urls` (FHIR_DATABASE_READ_URLS) for a store on `primary`."""
    return ReadRouting(
        primary,
        settings.read_urls,
        pin_seconds=settings.replica_pin_seconds,
        max_lag_seconds=settings.replica_max_lag_seconds,
        check_seconds=settings.replica_check_seconds,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
