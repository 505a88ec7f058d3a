"""Sending queued notifications over rest-hook, in order per Subscription, with retries (https://hl7.org/fhir/R4/subscription.html#2.46.7.2).

A `Deliverer` runs where change events are delivered (the API process without Redis, the
`fhir-server worker` processes with it). It claims a Subscription with due notifications by a
lease (`lease_until`, one UPDATE: two deliverers never hold the same one), sends its queue oldest
first, one notification at a time, outside any database transaction, and records each result:

* R4 rest-hook: without a payload, a POST with no body to the endpoint; with a payload, a PUT of
  the version to `[endpoint]/[type]/[id]` (a DELETE there for a delete), with the channel's headers.
* The resource is read AS ITS OWNER, at delivery time (`enforce.check_version`: the resource now and
  that version within the owner's grants); a notification its owner may no longer read is withheld.
* A failure (connection error, timeout, non-2xx) keeps the notification at the head of the queue:
  retried after `subscription_retry_base_seconds * 2^(failures-1)` (at most
  `subscription_retry_max_seconds`); after `subscription_max_failures` in a row the Subscription's
  status becomes error (with `error`), and back to active at the first success.
* A topic-based Subscription gets its notification Bundle POSTed (notification.py), its handshake
  first and its heartbeats when due (heartbeat.py), with the same order, retries and checks.
* A deliverer that dies leaves its lease to expire; the notification in flight is sent again
  (at least once; receivers de-duplicate by event number, sent as `X-Subscription-Event`).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import takewhile
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from sqlalchemy import delete, select, update

from ..auth import enforce
from ..errors import Forbidden, NotFound
from ..instant import now_us
from ..settings import Settings
from ..store.outbox import WriteContext
from ..store.sql import Store
from . import endpoint, heartbeat, notification, tables
from .owner import Owner

log = logging.getLogger("fhir_server.subscriptions")
POLL_SECONDS = 1.0
CLAIM = 64  # Subscriptions claimed per look
SWEEP_SECONDS = 300.0  # between deletions of old sent notifications
_S, _D = tables.subscription, tables.subscription_delivery
SIGNALS = ("handshake", "heartbeat")  # notifications that are no event
_LIVE: weakref.WeakSet[Deliverer] = weakref.WeakSet()


def wake_all() -> None:
    """New notifications were queued (the matcher committed): every deliverer of this process looks."""
    for deliverer in list(_LIVE):
        deliverer.wake()


@dataclass(frozen=True)
class Outcome:
    ok: bool
    error: str | None = None


class Deliverer:
    """Sends the notifications of one store."""

    def __init__(self, store: Store, settings: Settings, *, client: httpx.Client | None = None) -> None:
        self.store, self.settings = store, settings
        self.client = client or httpx.Client(
            timeout=settings.subscription_timeout_seconds, follow_redirects=False, trust_env=False
        )
        self.pool = ThreadPoolExecutor(
            max_workers=max(1, settings.subscription_delivery_threads), thread_name_prefix="subscription"
        )
        self._wake = threading.Event()
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        _LIVE.add(self)

    def wake(self) -> None:
        self._wake.set()

    def run(self, stop: threading.Event, poll: float = POLL_SECONDS) -> None:
        """Claim and send until `stop` is set; forget old sent notifications now and then."""
        swept = 0.0
        while not stop.is_set():
            self._wake.clear()
            try:
                heartbeat.queue_due(self.store)
                self.claim_due()
                if time.monotonic() - swept >= SWEEP_SECONDS:
                    swept = time.monotonic()
                    self.forget_sent()
            except Exception:  # the database went away for a moment: again at the next look
                log.warning("Claiming subscription notifications failed", exc_info=True)
            self._wake.wait(poll)

    def forget_sent(self) -> int:
        """Delete sent and withheld notifications queued more than `subscription_keep_seconds` ago
        (a Server-Sent Events client can resume within that window); pending ones stay."""
        before = now_us() - int(self.settings.subscription_keep_seconds * 1e6)
        with self.store.write() as tx:
            return int(
                tx.conn.execute(
                    delete(_D).where(_D.c.state.in_(("sent", "withheld")), _D.c.queued_at < before)
                ).rowcount
            )

    def claim_due(self) -> int:
        """Claim the Subscriptions with due notifications and drain each on the pool."""
        now = now_us()
        with self.store.read() as tx:
            due = list(
                tx.conn.execute(
                    select(_S.c.id)
                    .where(
                        _S.c.status.in_(("requested", "active", "error")),
                        _S.c.channel == "rest-hook",  # streaming channels are read by their connections
                        _S.c.retry_at <= now,
                        _S.c.lease_until <= now,
                        _S.c.id.in_(select(_D.c.sub_id).where(_D.c.state == "pending").distinct()),
                    )
                    .distinct()  # a topic's Subscription has a row per resource type
                    .limit(CLAIM)
                ).scalars()
            )
        claimed = 0
        for sub_id in due:
            with self._lock:
                if sub_id in self._busy:
                    continue
            if not self._lease(sub_id, now):
                continue
            with self._lock:
                self._busy.add(sub_id)
            self.pool.submit(self._drain_logged, sub_id)
            claimed += 1
        return claimed

    def _lease(self, sub_id: str, now: int) -> bool:
        until = now + int(self.settings.subscription_lease_seconds * 1e6)
        with self.store.write() as tx:
            got = tx.conn.execute(
                update(_S).where(_S.c.id == sub_id, _S.c.lease_until <= now).values(lease_until=until)
            ).rowcount
        return bool(got)

    def _drain_logged(self, sub_id: str) -> None:
        try:
            self.drain(sub_id)
        except Exception:
            log.warning("Delivering the notifications of Subscription/%s failed", sub_id, exc_info=True)
        finally:
            with self._lock:
                self._busy.discard(sub_id)

    def drain(self, sub_id: str) -> None:
        """Send the claimed Subscription's queue in order until it is empty or a send fails."""
        while True:
            with self.store.read() as tx:
                sub = tx.conn.execute(select(_S).where(_S.c.id == sub_id)).first()
                batch = [] if sub is None else self._head(tx, sub)
                request, withheld = (None, []) if not batch else self._request(tx, sub, batch)
            if sub is None or not batch:
                self._release(sub_id)
                return
            if request is None:
                self._settle([r.pk for r in batch], "withheld")
                continue
            outcome = self._send(sub, request)
            if outcome.ok:
                self._succeeded(sub, [r.pk for r in batch if r.pk not in withheld], withheld)
            else:
                self._failed(sub, outcome.error or "failed", handshake=batch[0].interaction == "handshake")
                return

    def _head(self, tx: Any, sub: Any) -> list[Any]:
        """What to send next: the oldest pending notification; a `requested` Subscription sends only
        its handshake; a topic's events go up to `max_count` in one notification (never a handshake
        or heartbeat with them)."""
        if sub.status not in ("requested", "active", "error"):
            return []
        pending = select(_D).where(_D.c.sub_id == sub.id, _D.c.state == "pending")
        if sub.status != "active":  # a handshake still pending goes before anything queued
            shake = tx.conn.execute(
                pending.where(_D.c.interaction == "handshake").order_by(_D.c.pk).limit(1)
            ).first()
            if shake is not None or sub.status == "requested":
                return [] if shake is None else [shake]
        limit = max(1, int(sub.max_count or 1)) if sub.topic else 1
        rows = list(tx.conn.execute(pending.order_by(_D.c.event_number, _D.c.pk).limit(limit)))
        if not rows or rows[0].interaction in SIGNALS:
            return rows[:1]
        return list(takewhile(lambda r: r.interaction not in SIGNALS, rows))

    # ---------------- one notification ----------------
    def _request(self, tx: Any, sub: Any, batch: list[Any]) -> tuple[dict[str, Any] | None, list[int]]:
        """The HTTP request of one notification and the queued rows it leaves out (their owner may
        not read them now); no request when it would carry nothing its owner may read."""
        if sub.topic:
            return self._topic_request(tx, sub, batch)
        (head,) = batch
        principal = Owner.of_row(sub).principal()
        body: bytes | None = None
        method, url = "POST", sub.endpoint
        if head.interaction != "delete":
            version = readable_version(tx, principal, head.res_type, head.res_id, head.version)
            if version is None:
                return None, [head.pk]
            if sub.payload:
                method, url = "PUT", f"{sub.endpoint.rstrip('/')}/{head.res_type}/{head.res_id}"
                body = version.content
        elif sub.payload:
            method, url = "DELETE", f"{sub.endpoint.rstrip('/')}/{head.res_type}/{head.res_id}"
        headers = _headers(sub, head)
        if body is not None:
            headers["Content-Type"] = sub.payload.split(";")[0].strip()
        return {"method": method, "url": url, "headers": headers, "content": body}, []

    def _topic_request(self, tx: Any, sub: Any, batch: list[Any]) -> tuple[dict[str, Any] | None, list[int]]:
        """A topic's notification: its Bundle POSTed to the endpoint, with the events of `batch` its
        owner may read now (none of them: no request)."""
        events: list[notification.Event] = []
        withheld: list[int] = []
        head = batch[0]
        kind = head.interaction
        if head.interaction not in SIGNALS:
            kind = "event-notification"
            principal = Owner.of_row(sub).principal()
            for row in batch:
                event = readable_event(tx, principal, row, sub.content)
                if event is None:
                    withheld.append(row.pk)
                else:
                    events.append(event)
            if not events:
                return None, withheld
        last = events[-1].number if events else int(head.event_number)
        body = notification.encode(notification.bundle(sub, self.settings.base, kind, last, events))
        headers = _headers(sub, head)
        if events:
            headers["X-Subscription-Event"] = str(events[0].number)
        headers["Content-Type"] = (sub.payload or notification.MEDIA_TYPE).split(";")[0].strip()
        request: dict[str, Any] = {"method": "POST", "url": sub.endpoint, "headers": headers, "content": body}
        if sub.timeout_seconds:
            request["timeout"] = float(sub.timeout_seconds)
        return request, withheld

    def _send(self, sub: Any, request: dict[str, Any]) -> Outcome:
        if sub.channel != "rest-hook":
            return Outcome(False, f"channel {sub.channel} has no receiver here")
        parts = urlsplit(request["url"])
        refused = endpoint.refusal(
            parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80), self.settings
        )
        if refused:
            return Outcome(False, refused)
        try:
            response = self.client.request(**request)
        except httpx.HTTPError as exc:
            return Outcome(False, f"{type(exc).__name__}: {str(exc)[:200]}")
        if 200 <= response.status_code < 300:
            return Outcome(True)
        return Outcome(False, f"the endpoint answered HTTP {response.status_code}")

    # ---------------- recording results ----------------
    def _settle(self, pks: list[int], state: str) -> None:
        with self.store.write() as tx:
            tx.conn.execute(update(_D).where(_D.c.pk.in_(pks)).values(state=state, sent_at=now_us()))

    def _succeeded(self, sub: Any, sent: list[int], withheld: list[int]) -> None:
        now = now_us()
        until = now + int(self.settings.subscription_lease_seconds * 1e6)
        with self.store.write(WriteContext("server")) as tx:
            tx.conn.execute(update(_D).where(_D.c.pk.in_(sent)).values(state="sent", sent_at=now))
            if withheld:
                tx.conn.execute(update(_D).where(_D.c.pk.in_(withheld)).values(state="withheld", sent_at=now))
            row = tx.conn.execute(select(_S.c.status).where(_S.c.id == sub.id)).first()
            values: dict[str, Any] = {"failures": 0, "retry_at": 0, "lease_until": until}
            if sub.heartbeat_seconds:  # a send is a sign of life: the next heartbeat one period on
                values["beat_at"] = now + int(sub.heartbeat_seconds) * 1_000_000
            if row is not None and row.status in ("error", "requested"):  # recovered, or shook hands
                values.update(status="active", error=None)
                _set_status(tx, sub.id, "active", None)
            tx.conn.execute(update(_S).where(_S.c.id == sub.id).values(**values))

    def _failed(self, sub: Any, error: str, *, handshake: bool = False) -> None:
        """A failed send: retried later; the Subscription goes to error after
        `subscription_max_failures` in a row, or at once when it was its handshake."""
        settings = self.settings
        with self.store.write(WriteContext("server")) as tx:
            row = tx.conn.execute(select(_S.c.status, _S.c.failures).where(_S.c.id == sub.id)).first()
            if row is None:
                return
            failures = int(row.failures) + 1
            pause = min(
                settings.subscription_retry_max_seconds,
                settings.subscription_retry_base_seconds * 2 ** min(failures - 1, 30),
            )
            values: dict[str, Any] = {
                "failures": failures,
                "retry_at": now_us() + int(pause * 1e6),
                "lease_until": 0,
                "error": error,
            }
            if handshake and row.status == "requested":
                values["status"] = "error"
                _set_status(tx, sub.id, "error", f"The handshake failed: {error}")
            elif row.status == "active" and failures >= settings.subscription_max_failures:
                values["status"] = "error"
                _set_status(tx, sub.id, "error", f"{failures} deliveries failed; the last: {error}")
            tx.conn.execute(update(_S).where(_S.c.id == sub.id).values(**values))
        log.info("Subscription/%s: delivery failed (%s), attempt %d", sub.id, error, failures)

    def _release(self, sub_id: str) -> None:
        """Give the lease back; if something was queued meanwhile, look again at once."""
        with self.store.write() as tx:
            tx.conn.execute(update(_S).where(_S.c.id == sub_id).values(lease_until=0))
            pending = tx.conn.execute(
                select(_D.c.pk).where(_D.c.sub_id == sub_id, _D.c.state == "pending").limit(1)
            ).first()
        if pending is not None:
            self.wake()


def _headers(sub: Any, head: Any) -> dict[str, str]:
    """The channel's headers, and the Subscription's id and the event's number."""
    headers: dict[str, str] = {}
    for header in orjson.loads(sub.headers or "[]"):
        name, _, value = header.partition(":")
        headers[name.strip()] = value.strip()
    headers["X-Subscription-Id"] = sub.id
    headers["X-Subscription-Event"] = str(head.event_number)
    return headers


def readable_version(tx: Any, principal: Any, res_type: str, res_id: str, version: int) -> Any:
    """That version as `principal` may read it now (None: gone, or not theirs to read)."""
    stored = tx.version(res_type, res_id, version)
    if stored is None:
        return None
    try:
        enforce.check_version(tx, principal, stored)
    except (NotFound, Forbidden):
        return None
    return stored


def readable_event(tx: Any, principal: Any, row: Any, content: str | None) -> notification.Event | None:
    """A queued event as its owner may see it now (None: the owner may not read that version)."""
    body: bytes | None = None
    if row.interaction != "delete":
        version = readable_version(tx, principal, row.res_type, row.res_id, row.version)
        if version is None:
            return None
        body = version.content if content == "full-resource" else None
    return notification.Event(
        int(row.event_number), int(row.queued_at), row.interaction, row.res_type, row.res_id, body
    )


def _set_status(tx: Any, sub_id: str, status: str, error: str | None) -> None:
    """The server writes the Subscription's status (and error) as a new version."""
    prev = tx.current("Subscription", sub_id)
    if prev is None or prev.deleted:
        return
    resource = prev.resource()
    resource["status"] = status
    if error:
        resource["error"] = error
    else:
        resource.pop("error", None)
    tx.update(prev, resource)


def start(store: Store, settings: Settings) -> tuple[Deliverer, threading.Event]:
    """Run a deliverer in a daemon thread."""
    deliverer = Deliverer(store, settings)
    stop = threading.Event()
    threading.Thread(target=deliverer.run, args=(stop,), name="subscriptions", daemon=True).start()
    return deliverer, stop
