"""Delivering change events to each registered listener from its durable position (docs/events.md).

Without Redis the API process runs the dispatcher in a background thread, woken after each commit
that stored versions; with Redis the `fhir-server worker` processes run it (jobs/queue.py), polling.
Each delivery is one write transaction: claim the consumer's row (so two dispatchers never hand
out the same batch), read the events after its position, call the listener, advance, commit.
A look starts with a read-only probe after the position this process last saw for each consumer
(`outbox.any_after`; one connection, and one probe per distinct position, for all consumers): an
empty look takes no lock and writes nothing. If another process has moved
the consumer further, the probe only errs towards a claim that then finds nothing.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import Connection

from ..redacted_traceback import format_exception
from ..store import outbox
from ..store.sql import Store
from .registry import COMMITTED, IDLE, LISTENERS, Idle, Listener

log = logging.getLogger("fhir_server.events")
BATCH = 500  # events per delivery
POLL_SECONDS = 1.0  # between looks when nothing woke the dispatcher
# For a second after a wake or a delivery, looks that find nothing come again after 5 ms, then
# twice as long each time up to 20 ms (a commit becomes readable on PostgreSQL only once every older
# transaction in the cluster ended); after that second, at the poll.
SETTLE_FIRST_SECONDS, SETTLE_MAX_SECONDS, SETTLE_WINDOW_SECONDS = 0.005, 0.02, 1.0


class Dispatcher:
    """Hands the events of one store to listeners (the registered ones by default)."""

    def __init__(
        self,
        store: Store,
        listeners: dict[str, Listener] | None = None,
        *,
        batch: int = BATCH,
        idle: dict[str, Idle] | None = None,
    ) -> None:
        self.store = store
        self.listeners = LISTENERS if listeners is None else listeners
        self.idle = (IDLE if listeners is None else {}) if idle is None else idle
        self.batch = batch
        self._wake = threading.Event()
        self._seen: dict[str, outbox.Position] = {}  # each consumer's position after our last look

    def _waiting(self, names: list[str]) -> set[str]:
        """The consumers that may have events after the position this process last saw for them:
        those never seen, and those whose position the probe finds events after. One connection
        and one probe per distinct position (the consumers of a process usually share theirs)."""
        seen = {name: self._seen[name] for name in names if name in self._seen}
        if not seen:
            return set(names)
        with self.store.engine.connect() as conn:
            after = {p: outbox.any_after(conn, p) for p in sorted(set(seen.values()))}
        return {name for name in names if name not in seen or after[seen[name]]}

    def deliver(self, name: str, *, probe: bool = True) -> int:
        """One batch of events after the consumer's position to its listener; how many there were.
        `probe`: look first, read-only, whether anything follows the position last seen."""
        listener = self.listeners[name]
        if probe and name not in self._waiting([name]):
            return 0
        with self.store.write() as tx:
            position = outbox.claim(tx.conn, name)
            skipped = self._skipped(tx.conn, name, position)
            if skipped is not None:  # nothing for the listener: move on unread
                outbox.advance(tx.conn, name, skipped)
                events = []
            else:
                events = outbox.events_after(tx.conn, position, self.batch)
                if not events:
                    self._seen[name] = position
                    return 0
                listener(events, tx)
                outbox.advance(tx.conn, name, events[-1].position)
        if skipped is not None:
            self._seen[name] = skipped
            return 0
        self._seen[name] = events[-1].position
        committed = COMMITTED.get(name)
        if committed is not None:
            committed()
        return len(events)

    def _skipped(self, conn: Connection, name: str, position: outbox.Position) -> outbox.Position | None:
        """The newest committed event, when the consumer is behind it and its listener is idle
        (would do nothing with any event committed so far): the position to move it to unread.

        The newest event is read BEFORE the idle test: under READ COMMITTED each statement sees
        what committed before it started, so whatever made the listener busy again (a Subscription
        stored) committed after every event skipped, and the events after it are delivered."""
        idle = self.idle.get(name)
        if idle is None:
            return None
        newest = outbox.newest_committed(conn)
        return newest if newest > position and idle(conn) else None

    def deliver_all(self) -> int:
        """Every consumer up to the newest committed event; a listener that fails is logged and
        tried again (from the same position) next time. Returns the events delivered."""
        delivered = 0
        names = list(self.listeners)
        try:
            waiting = self._waiting(names)
        except Exception as exc:  # the database went away for a moment: look again next time
            log.warning("Looking for change events failed\n%s", format_exception(exc))
            return 0
        for name in names:
            if name not in waiting:
                continue
            try:
                while True:
                    count = self.deliver(name, probe=False)
                    delivered += count
                    if count < self.batch:
                        break
            except Exception as exc:
                log.error("Change-event listener %r failed\n%s", name, format_exception(exc))
        return delivered

    def wake(self) -> None:
        """Something was committed: look now instead of at the next poll."""
        self._wake.set()

    def run(self, stop: threading.Event, poll: float = POLL_SECONDS) -> None:
        """Deliver until `stop` is set; after a wake or a delivery, look again soon (see
        SETTLE_FIRST_SECONDS), else at every `poll`."""
        wait, settle_until = SETTLE_FIRST_SECONDS / 2, 0.0
        while not stop.is_set():
            self._wake.clear()
            delivered = 0
            try:
                delivered = self.deliver_all()
            except Exception:  # the database went away for a moment: try again at the next poll
                log.warning("Delivering change events failed", exc_info=True)
            if delivered:
                wait, settle_until = SETTLE_FIRST_SECONDS, time.monotonic() + SETTLE_WINDOW_SECONDS
            elif time.monotonic() < settle_until:
                wait = min(wait * 2, SETTLE_MAX_SECONDS)
            else:
                wait = poll
            if self._wake.wait(wait):
                wait = SETTLE_FIRST_SECONDS / 2  # doubled to the first settle wait after this look
                settle_until = time.monotonic() + SETTLE_WINDOW_SECONDS


def start(store: Store, *, wake_on_commit: bool = True) -> tuple[Dispatcher, threading.Event] | None:
    """Run a dispatcher for the registered listeners in a daemon thread (None when there are none);
    `wake_on_commit`: this process writes, so its commits wake the dispatcher."""
    if not LISTENERS:
        return None
    dispatcher = Dispatcher(store)
    stop = threading.Event()
    if wake_on_commit:
        store.after_commit.append(dispatcher.wake)
    threading.Thread(target=dispatcher.run, args=(stop,), name="change-events", daemon=True).start()
    return dispatcher, stop
