"""Planner statistics kept current after writes through any path, off the request path.

PostgreSQL plans with the statistics ANALYZE gathers (https://www.postgresql.org/docs/15/planner-stats.html).
Autovacuum re-analyzes a table once `autovacuum_analyze_threshold (50) + autovacuum_analyze_scale_factor
(0.1) * reltuples` rows changed, but only when its launcher comes by (`autovacuum_naptime`, a minute)
and not at all when autovacuum is off: right after a load of Synthea transaction Bundles a search such
as `Observation?category=vital-signs&_sort=-date` took 11 s instead of 10 ms (docs/bulk-data.md,
"Planner statistics"). So every committed write counts its rows per table and per resource type in
this process (`Changes`, a few dict additions per commit), and a background thread per engine runs
https://www.postgresql.org/docs/15/sql-analyze.html on the tables whose changes passed
`BASE_ROWS + SCALE * rows at the last ANALYZE` (autovacuum's formula; the changes are the larger of this process's
count and the server's `n_mod_since_analyze`, which includes other processes' writes), and on the
tables a resource type wrote to when this process's count of that type passes 1,000, 10,000 or 100,000
(the statistics of `resource.res_type` and of the index tables' `param_id` learn of a new type long
before a fifth of the table changed). Passes are debounced (`QUIET` seconds without commits, at most
`MAX_DELAY` after the first, and after a pass of D seconds the next waits (1/DUTY - 1) D), one at a
time per database (a PostgreSQL advisory lock shared by every process); each ANALYZE gives up after
`LOCK_TIMEOUT` rather than wait for a lock. SQLite's planner needs its statistics as much
(sqlite_stat1: `Observation?category=vital-signs&_sort=-date` 12 s -> 0.1 s): the same counts decide,
and an approximate ANALYZE runs (`SQLITE_ANALYSIS_LIMIT`). Measured in docs/bulk-data.md.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, text

from . import tables as t
from .engine import is_sqlite

log = logging.getLogger(__name__)

BASE_ROWS = 500
SCALE = 0.2
TYPE_STEPS = (1_000, 10_000, 100_000)
QUIET = 1.0  # also about the time a PostgreSQL backend takes to report its row counts
MAX_DELAY = 5.0
DUTY = 0.2  # after a pass of D seconds the next waits 4 D: ANALYZE busies at most a fifth of a backend
IDLE_EXIT = 60.0  # the thread ends after this long without work (started again on demand)
LOCK_TIMEOUT = "2s"
SQLITE_ANALYSIS_LIMIT = 1000  # rows per index: 40 ms instead of 1.1 s at 37k resources, same plans
TABLES = ("resource", "resource_version", *(table.name for table in t.INDEX_TABLES.values()))
_INDEX_TABLE = {kind: table.name for kind, table in t.INDEX_TABLES.items()}
_LOCK_KEY = "fhir_server.autoanalyze"
_PG_SIZES = text(  # reltuples: the rows the last ANALYZE (or VACUUM) counted, -1 before any
    "SELECT s.relname, greatest(c.reltuples, 0), s.n_mod_since_analyze FROM pg_stat_user_tables s "
    "JOIN pg_class c ON c.oid = s.relid WHERE s.schemaname = current_schema() AND s.relname IN :names"
).bindparams(bindparam("names", expanding=True))
_SQLITE_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table'"
_SQLITE_SIZES = "SELECT tbl, max(CAST(stat AS INTEGER)), 0 FROM sqlite_stat1 GROUP BY tbl"


class Changes:
    """Rows one database transaction wrote, per table and per resource type (counted at flush).

    Rows the server records for itself (`Tx.record`: the audit trail) are a steady trickle, not a
    load: they count for their type's steps (`TYPE_STEPS`, which then analyze the tables they wrote
    to) but not toward a table's changed rows, which PostgreSQL's own autovacuum follows. Counted,
    every few hundred reads of a small database started a pass over every table (bench/bench_audit.py:
    about half of the audit trail's cost of a read, docs/audit.md)."""

    __slots__ = ("recorded", "rows", "types")

    def __init__(self) -> None:
        self.rows: Counter[str] = Counter()
        self.types: Counter[str] = Counter()
        self.recorded: Counter[str] = Counter()  # rows per table of recorded resources (not in `rows`)

    def add(self, batch: Any, *, recorded: bool = False) -> None:
        """Count a `store.fast.Batch` written (stale index rows deleted are not counted);
        `recorded`: the server's own records (see the class)."""
        written = len(batch.creates) + len(batch.versions)
        if not written and not batch.reindex:
            return
        rows, types = self.recorded if recorded else self.rows, self.types
        rows["resource"] += written
        rows["resource_version"] += written
        if batch.creates:
            types.update(create.res_type for create in batch.creates)
            per_kind: dict[str, int] = {}  # a chunk's thousand creates: one table lookup per kind
            for create in batch.creates:
                for kind, index in create.index.items():
                    per_kind[kind] = per_kind.get(kind, 0) + len(index)
            for kind, count in per_kind.items():
                rows[_INDEX_TABLE[kind]] += count
        for version in batch.versions:
            types[version[1]] += 1
        for _, index in batch.reindex:
            for kind, found in index.items():
                rows[_INDEX_TABLE[kind]] += len(found)


def threshold(rows: float) -> float:
    """Changed rows after which a table that had `rows` rows at its last ANALYZE is analyzed again."""
    return BASE_ROWS + SCALE * max(rows, 0.0)


class Analyzer:
    """Counts one engine's committed changes and analyzes its tables in a background thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sqlite = is_sqlite(engine)
        self.passes = 0
        self.analyzed: list[tuple[str, float]] = []  # (table, seconds) of the last pass
        self._cond = threading.Condition()
        self._pending: Counter[str] = Counter()  # rows changed since this process analyzed the table
        self._recorded: Counter[str] = Counter()  # of them, recorded rows: counted once a pass runs
        self._forced: set[str] = set()
        self._types: Counter[str] = Counter()  # rows written per type since the process started
        self._rows: dict[str, float] = {}  # rows per table at its last ANALYZE, as the last pass saw
        self._due_since = 0.0  # when work became due (0: none)
        self._last_commit = 0.0
        self._running = False
        self._not_before = 0.0  # the earliest start of the next pass (DUTY)
        self._elsewhere = False  # the last pass found another process's pass running
        self._thread: threading.Thread | None = None

    def committed(self, changes: Changes) -> None:
        """Note a committed transaction's changes (cheap: called on the request path)."""
        if not changes.rows and not changes.types:
            return
        with self._cond:
            self._last_commit = now = time.monotonic()
            pending = self._pending
            pending.update(changes.rows)
            self._recorded.update(changes.recorded)
            for rtype, n in changes.types.items():
                before = self._types[rtype]
                self._types[rtype] = before + n
                if any(before < step <= before + n for step in TYPE_STEPS):
                    self._forced.update(name for name, rows in pending.items() if rows)
                    self._forced.update(name for name, rows in self._recorded.items() if rows)
            due = bool(self._forced) or any(
                pending[name] >= threshold(self._rows.get(name, 0.0)) / 2 for name in changes.rows
            )  # half: the server's counts may add other processes' writes
            if due and not self._due_since:
                self._due_since = now
                self._start()
                self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no pass is due or running; False after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._due_since or self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="autoanalyze", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cond:
                idle_since = time.monotonic()
                while not self._due_since:
                    if time.monotonic() - idle_since > IDLE_EXIT:
                        self._thread = None
                        return
                    self._cond.wait(1.0)
                while True:  # debounce: quiet for QUIET seconds, or MAX_DELAY after work became due
                    now = time.monotonic()
                    ready = min(self._last_commit + QUIET, self._due_since + MAX_DELAY)
                    wait = max(ready, self._not_before) - now
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                pending, forced = self._pending + self._recorded, self._forced
                self._pending, self._recorded, self._forced = Counter(), Counter(), set()
                self._due_since, self._running = 0.0, True
            left: Counter[str] = pending
            started = time.monotonic()
            self.analyzed, self._elsewhere = [], False
            try:
                left = self._pass(pending, forced)
            except Exception:  # e.g. the database went away: the next commits try again
                log.warning("background ANALYZE failed", exc_info=True)
            finally:
                with self._cond:
                    self._pending.update(left)
                    self._running = False
                    now = time.monotonic()
                    self._not_before = now + (now - started) * (1 / DUTY - 1)
                    if not self.analyzed:  # nothing was due yet: look again in a while, not per commit
                        self._not_before = max(self._not_before, now + MAX_DELAY)
                    if self._elsewhere:
                        self._forced |= forced
                        self._due_since = self._due_since or now
                    self.passes += 1
                    self._cond.notify_all()

    def _pass(self, pending: Counter[str], forced: set[str]) -> Counter[str]:
        """ANALYZE the tables that are due; returns the changes still pending."""
        if self.sqlite:
            return self._pass_sqlite(pending, forced)
        autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        with autocommit.connect() as conn:
            key = {"k": _LOCK_KEY}
            if not conn.execute(text("SELECT pg_try_advisory_lock(hashtext(:k))"), key).scalar():
                self._elsewhere = True  # another process is analyzing: try again after MAX_DELAY
                return pending
            try:
                sizes = conn.execute(_PG_SIZES, {"names": list(TABLES)}).all()
                conn.execute(text(f"SET lock_timeout = '{LOCK_TIMEOUT}'"))
                try:
                    self._analyze(conn, self._due(sizes, pending, forced), pending)
                finally:
                    conn.execute(text("RESET lock_timeout"))
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(hashtext(:k))"), key)
        return pending

    def _pass_sqlite(self, pending: Counter[str], forced: set[str]) -> Counter[str]:
        """SQLite: sizes from sqlite_stat1 (rows at the last ANALYZE), approximate ANALYZE
        (https://sqlite.org/lang_analyze.html#approx), one write transaction."""
        with self.engine.connect() as conn:
            conn.info["sqlite_begin"] = "BEGIN IMMEDIATE"  # ANALYZE writes sqlite_stat1
            try:
                with conn.begin():
                    present = set(conn.exec_driver_sql(_SQLITE_TABLES).scalars())
                    sizes: list[Any] = []
                    if "sqlite_stat1" in present:
                        sizes = list(conn.exec_driver_sql(_SQLITE_SIZES).all())
                    known = {name for name, _, _ in sizes}
                    sizes += [(name, 0, 0) for name in TABLES if name in present and name not in known]
                    conn.exec_driver_sql(f"PRAGMA analysis_limit = {SQLITE_ANALYSIS_LIMIT}")
                    self._analyze(conn, self._due(sizes, pending, forced), pending)
            finally:
                conn.info.pop("sqlite_begin", None)
        return pending

    def _due(self, sizes: Sequence[Any], pending: Counter[str], forced: set[str]) -> list[str]:
        """The tables of (name, rows at the last ANALYZE, rows changed since) that are due."""
        due = []
        for name, rows, modified in sizes:
            if name not in TABLES:
                continue
            changed = max(int(modified), pending.get(name, 0))
            self._rows[name] = float(rows)
            if changed and (name in forced or changed >= threshold(float(rows))):
                due.append(name)
                self._rows[name] = float(rows) + changed  # about what this ANALYZE will count
        return due

    def _analyze(self, conn: Connection, due: list[str], pending: Counter[str]) -> None:
        done: list[tuple[str, float]] = []
        for name in due:
            started = time.perf_counter()
            conn.exec_driver_sql(f'ANALYZE "{name}"')
            done.append((name, time.perf_counter() - started))
            pending.pop(name, None)
        self.analyzed = done


_analyzers: weakref.WeakKeyDictionary[Engine, Analyzer] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def analyzer(engine: Engine) -> Analyzer:
    """The engine's analyzer (one per engine, shared by its stores)."""
    with _lock:
        found = _analyzers.get(engine)
        if found is None:
            found = _analyzers[engine] = Analyzer(engine)
        return found
