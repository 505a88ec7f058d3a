"""Writing the audit trail off the request path, in batches (docs/audit.md).

Requests hand their `Access` to a bounded in-memory queue (a deque appended without waking anyone)
and return; one background thread per process turns what is queued into AuditEvents and writes them
in ONE transaction per batch (at most
`batch` records, or what arrived within `interval` seconds), through `Tx.record`: resource, version
and index rows (`event_index.py`) in bulk, and no change event. The same thread delivers the change
events to the audit consumer (`change_events.py`), after commits of this process or every
`CHANGE_POLL` seconds (writes made by other processes). When the queue is full the request waits
for room (back-pressure) rather than drop an audit record. A batch that cannot be written is
logged (types only) and tried once more with the next one; records still unwritten at close are
counted in the log.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from typing import Any

from ..redacted_traceback import format_exception
from ..store import outbox
from ..store.outbox import WriteContext
from ..store.sql import Store
from . import access_events, change_events, event_index, retention
from .access import Access

log = logging.getLogger("fhir_server.audit")
CONSUMER = "audit"  # the change consumer's name (its durable position): keep it stable
CHANGE_POLL = 2.0
CHANGE_BATCH = 2000
SWEEP_SECONDS = 3600.0  # between retention sweeps (and one at start)
SOURCE = WriteContext("audit")


def record_operator_event(store: Store, base: str, event: str, *, user: str | None = None) -> None:
    """An operator command's event (a password reset link made, say), written at once in its own transaction."""
    now_us = time.time_ns() // 1000
    access = Access(
        method="CLI",
        interaction="auth",
        res_type="",
        path="",
        request_id=uuid.uuid4().hex,
        started_us=now_us,
        event=event,
        event_detail="operator",
        event_user=user,
        status=200,
        ended_us=now_us,
    )
    with store.write(SOURCE) as tx:
        for audit_event in access_events.audit_events(access, base):
            tx.record(audit_event, audit_event["id"], event_index.rows(audit_event))


class _Flush:
    def __init__(self) -> None:
        self.done = threading.Event()


class Recorder:
    """The audit writer of one store in this process."""

    def __init__(
        self,
        store: Store,
        base: str,
        *,
        retention_days: int = 0,
        queue_size: int = 10_000,
        batch: int = 500,
        interval: float = 0.5,
    ) -> None:
        self.store, self.base, self.batch, self.interval = store, base, batch, interval
        self.retention_days = retention_days
        self._next_sweep = 0.0
        self.queue_size = queue_size
        # Records waiting: appended by requests without a lock and without waking the thread (a
        # wake per request cost the request more than its record: a thread switch each time); the
        # thread takes them every `interval`, or at once when a batch is full, a flush or close asks.
        self._pending: deque[Access] = deque()
        self._flushes: list[_Flush] = []
        self._wake = threading.Event()
        self._room = threading.Condition()
        self._stopping = False
        self.listener = change_events.listener(base)
        self._changed = threading.Event()
        self._retry: list[dict[str, Any]] = []
        self.written = 0
        self.cpu_seconds = 0.0  # CPU of the recorder thread itself (bench/bench_audit.py reports it)
        self._thread = threading.Thread(target=self._run, name="audit-recorder", daemon=True)
        store.after_commit.append(self._committed)
        self._thread.start()

    def offer(self, access: Access) -> bool:
        """Queue one request's record unless the queue is full (then False: call `submit`)."""
        pending = self._pending
        if len(pending) >= self.queue_size:
            self._wake.set()
            return False
        pending.append(access)
        if len(pending) == self.batch:
            self._wake.set()
        return True

    def submit(self, access: Access) -> None:
        """Queue one request's record (waits for room when the queue is full: back-pressure)."""
        while not self.offer(access):
            with self._room:
                self._room.wait(0.05)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything submitted before, and every change event committed before, is written."""
        marker = _Flush()
        self._flushes.append(marker)
        self._wake.set()
        if not marker.done.wait(timeout):
            raise TimeoutError("the audit recorder did not flush in time")

    def close(self) -> None:
        """Write what is queued and stop the thread."""
        if not self._thread.is_alive():
            return
        self._stopping = True
        self._wake.set()
        self._thread.join(30)
        if self._committed in self.store.after_commit:
            self.store.after_commit.remove(self._committed)

    # ---------------- the thread ----------------
    def _committed(self) -> None:
        if threading.current_thread() is not self._thread:
            self._changed.set()

    def _take(self) -> list[Access]:
        """Up to `batch` of the waiting records, oldest first."""
        pending, taken = self._pending, list[Access]()
        while pending and len(taken) < self.batch:
            taken.append(pending.popleft())
        return taken

    def _run(self) -> None:
        last_changes = time.monotonic()
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            stop = self._stopping
            flushes, self._flushes = self._flushes, []  # a flush sees every record queued before it
            started = time.thread_time()
            while True:
                taken = self._take()
                self._write(taken)
                with self._room:
                    self._room.notify_all()
                if len(taken) < self.batch:
                    break
            now = time.monotonic()
            if flushes:
                self._changed.clear()
                self._deliver_until_caught_up()
                last_changes = now
            elif stop or self._changed.is_set() or now - last_changes >= CHANGE_POLL:
                self._changed.clear()
                self._deliver_changes()
                last_changes = now
            if now >= self._next_sweep:
                self._sweep()
                self._next_sweep = now + SWEEP_SECONDS
            self.cpu_seconds += time.thread_time() - started
            for marker in flushes:
                marker.done.set()
            if stop:
                if self._retry:
                    log.error(
                        "Audit records not written at shutdown", extra={"fields": {"count": len(self._retry)}}
                    )
                return

    def _write(self, pending: list[Access]) -> None:
        events = self._retry
        self._retry = []
        for access in pending:
            try:
                events += access_events.audit_events(access, self.base)
            except Exception as exc:  # a record that cannot be built must not stop the trail
                log.error("Building an audit record failed\n%s", format_exception(exc))
        if not events:
            return
        try:
            with self.store.write(SOURCE) as tx:
                for event in events:
                    tx.record(event, event["id"], event_index.rows(event))
            self.written += len(events)
        except Exception as exc:
            log.error("Writing audit records failed\n%s", format_exception(exc))
            keep = 10 * self.batch
            if len(events) > keep:
                log.error("Audit records dropped", extra={"fields": {"count": len(events) - keep}})
            self._retry = events[-keep:]

    def _sweep(self) -> None:
        try:
            removed = retention.sweep(self.store, self.retention_days)
        except Exception as exc:
            log.error("Sweeping expired audit records failed\n%s", format_exception(exc))
            return
        if removed:
            log.info("Expired audit records removed", extra={"fields": {"count": removed}})

    def _deliver_until_caught_up(self, patience: float = 20.0) -> None:
        """Deliver until every event stored before now is recorded. On PostgreSQL an event is
        delivered once no older transaction in the cluster is still running (docs/events.md), so
        this may take a few tries."""
        with self.store.read() as tx:
            target = outbox.latest(tx.conn)
        deadline = time.monotonic() + patience
        while True:
            self._deliver_changes()
            with self.store.read() as tx:
                reached = outbox.position(tx.conn, CONSUMER) or outbox.START
            if reached >= target or time.monotonic() > deadline:
                return
            time.sleep(0.2)  # an older transaction somewhere in the cluster is still running

    def _deliver_changes(self) -> None:
        """The change events after the audit consumer's position, as AuditEvents (docs/events.md:
        claim, read, record, advance in one transaction: each write is recorded exactly once)."""
        try:
            while True:
                with self.store.write(SOURCE) as tx:
                    position = outbox.claim(tx.conn, CONSUMER)
                    events = outbox.events_after(tx.conn, position, CHANGE_BATCH)
                    if not events:
                        return
                    self.listener(events, tx)
                    outbox.advance(tx.conn, CONSUMER, events[-1].position)
                if len(events) < CHANGE_BATCH:
                    return
        except Exception as exc:
            log.error("Recording change events in the audit trail failed\n%s", format_exception(exc))
