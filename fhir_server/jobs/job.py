"""A Bulk Data job and its lifecycle (https://hl7.org/fhir/uv/bulkdata/STU2/export.html#bulk-data-status-request).

accepted --claim--> in-progress --complete--> completed
                        |  \\--fail--> failed
                        \\-- lease expires (worker killed) --> taken over by the next claim, from the
                            last checkpoint; failed with a reason after `job_max_attempts` runs
any active or completed job --cancel (DELETE)--> cancelled

Every transition is one conditional UPDATE, so two workers can never both own a job and a cancelled
job is never revived: a worker that lost its lease finds out at its next checkpoint and stops.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Row, and_, delete, func, insert, or_, select, update

from .. import instant
from ..errors import TooManyRequests
from ..store.sql import Store
from . import tables
from .requester import Requester
from .tables import ACTIVE

_J = tables.job.c


@dataclass(frozen=True)
class Job:
    """One row of the job table."""

    id: str
    kind: str
    client_id: str | None
    requester_kind: str | None
    requester_subject: str | None
    requester_fhir_user: str | None
    requester_patient: str | None
    status: str
    request_url: str
    params: dict[str, Any]
    transaction_time: int
    progress: dict[str, Any]
    progress_text: str
    outputs: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    reason: str | None
    owner: str | None
    heartbeat: int | None
    attempts: int
    next_poll: int
    created: int
    updated: int
    expires: int | None


def _job(row: Row[Any]) -> Job:
    return Job(**{name: getattr(row, name) for name in Job.__dataclass_fields__})


def worker_id() -> str:
    """A name for one run of a job, unique across hosts, processes and threads."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:8]}"


def new_job_id() -> str:
    """A fresh job id (32 hex digits)."""
    return uuid.uuid4().hex


def create(
    store: Store,
    *,
    kind: str,
    request_url: str,
    params: dict[str, Any],
    transaction_time: int,
    max_active: int,
    retry_after: int,
    job_id: str | None = None,
    requester: Requester | None = None,
    client_id: str | None = None,
) -> Job:
    """Insert an accepted job of `requester` (or of just `client_id`); 429 when that requester already
    has `max_active` jobs running (counted per requester, so one user's jobs never hold up, or reveal,
    another user's of the same client)."""
    tables.ensure(store.engine)
    who = requester if requester is not None else Requester(client_id=client_id)
    now = instant.now_us()
    with store.write() as tx:
        store.lock(tx, who.lock_key())
        active = tx.conn.execute(
            select(func.count()).select_from(tables.job).where(who.condition(), _J.status.in_(ACTIVE))
        ).scalar_one()
        if active >= max_active:
            raise TooManyRequests(
                f"You already have {active} bulk data job(s) in progress; wait for them to finish "
                "or cancel one",
                headers={"Retry-After": str(retry_after)},
            )
        created = Job(
            id=job_id or new_job_id(),
            kind=kind,
            client_id=who.client_id,
            requester_kind=who.kind,
            requester_subject=who.subject,
            requester_fhir_user=who.fhir_user,
            requester_patient=who.patient,
            status="accepted",
            request_url=request_url,
            params=params,
            transaction_time=transaction_time,
            progress={},
            progress_text="accepted",
            outputs=[],
            errors=[],
            reason=None,
            owner=None,
            heartbeat=None,
            attempts=0,
            next_poll=0,
            created=now,
            updated=now,
            expires=None,
        )
        tx.conn.execute(insert(tables.job), asdict(created))
    return created


def get(store: Store, job_id: str) -> Job | None:
    """The job, or None when there is no such job."""
    tables.ensure(store.engine)
    with store.engine.connect() as conn:
        found = conn.execute(select(tables.job).where(_J.id == job_id)).first()
    return _job(found) if found else None


def _update(store: Store, where: Any, **values: Any) -> bool:
    values.setdefault("updated", instant.now_us())
    with store.engine.begin() as conn:
        return bool(conn.execute(update(tables.job).where(where).values(**values)).rowcount == 1)


def claim(store: Store, job_id: str, owner: str, lease_seconds: float) -> Job | None:
    """Take the job for `owner` if it is waiting or its owner's lease has run out; None otherwise."""
    now = instant.now_us()
    stale = now - int(lease_seconds * 1_000_000)
    free = or_(_J.owner.is_(None), _J.heartbeat < stale)
    taken = _update(
        store,
        and_(_J.id == job_id, _J.status.in_(ACTIVE), free),
        owner=owner,
        heartbeat=now,
        status="in-progress",
        attempts=_J.attempts + 1,
        updated=now,
    )
    return get(store, job_id) if taken else None


def _owned(job_id: str, owner: str) -> Any:
    return and_(_J.id == job_id, _J.owner == owner, _J.status == "in-progress")


def beat(store: Store, job_id: str, owner: str) -> bool:
    """Renew the lease; False when the job was cancelled or taken over."""
    now = instant.now_us()
    return _update(store, _owned(job_id, owner), heartbeat=now, updated=now)


def checkpoint(
    store: Store,
    job_id: str,
    owner: str,
    *,
    progress: dict[str, Any],
    progress_text: str,
    outputs: list[dict[str, Any]],
    errors: list[dict[str, Any]],
) -> bool:
    """Record where a resumed run continues; False when the job was cancelled or taken over."""
    now = instant.now_us()
    return _update(
        store,
        _owned(job_id, owner),
        progress=progress,
        progress_text=progress_text[:100],
        outputs=outputs,
        errors=errors,
        heartbeat=now,
        updated=now,
    )


def complete(
    store: Store,
    job_id: str,
    owner: str,
    *,
    outputs: list[dict[str, Any]],
    errors: list[dict[str, Any]],
    ttl_seconds: int,
) -> bool:
    """Mark the job completed; its files expire after `ttl_seconds`."""
    now = instant.now_us()
    return _update(
        store,
        _owned(job_id, owner),
        status="completed",
        progress_text="completed",
        outputs=outputs,
        errors=errors,
        owner=None,
        heartbeat=None,
        expires=now + ttl_seconds * 1_000_000,
        updated=now,
    )


def fail(
    store: Store, job_id: str, reason: str, *, owner: str | None = None, ttl_seconds: int = 3600
) -> bool:
    """Mark an active job failed with a reason (only as its owner, when `owner` is given)."""
    now = instant.now_us()
    where = _owned(job_id, owner) if owner else and_(_J.id == job_id, _J.status.in_(ACTIVE))
    return _update(
        store,
        where,
        status="failed",
        progress_text="failed",
        reason=reason,
        owner=None,
        heartbeat=None,
        expires=now + ttl_seconds * 1_000_000,
        updated=now,
    )


def cancel(store: Store, job_id: str, ttl_seconds: int = 3600) -> bool:
    """Cancel (or, once completed, discard) a job; False when it was already cancelled or gone."""
    now = instant.now_us()
    return _update(
        store,
        and_(_J.id == job_id, _J.status != "cancelled"),
        status="cancelled",
        progress_text="cancelled",
        owner=None,
        heartbeat=None,
        expires=now + ttl_seconds * 1_000_000,
        updated=now,
    )


def polled(store: Store, job_id: str, next_poll: int) -> None:
    """Remember when the client may poll again (earlier polls get a 429)."""
    _update(store, _J.id == job_id, next_poll=next_poll)


def stale(store: Store, lease_seconds: float) -> list[Job]:
    """Active jobs nobody is working on: the owner stopped renewing its lease, or the job was never
    picked up (lost queue message) for a lease period."""
    tables.ensure(store.engine)
    cutoff = instant.now_us() - int(lease_seconds * 1_000_000)
    dead_owner = and_(_J.owner.is_not(None), _J.heartbeat < cutoff)
    never_taken = and_(_J.owner.is_(None), _J.updated < cutoff)
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(tables.job).where(_J.status.in_(ACTIVE), or_(dead_owner, never_taken)).order_by(_J.created)
        ).all()
    return [_job(r) for r in rows]


def release(store: Store, job: Job) -> bool:
    """Free a stale job for the next claim (the sweeper does this before resubmitting it)."""
    if job.owner is None:
        where = and_(_J.id == job.id, _J.owner.is_(None), _J.updated == job.updated)
    else:
        where = and_(_J.id == job.id, _J.owner == job.owner, _J.heartbeat == job.heartbeat)
    return _update(store, and_(where, _J.status.in_(ACTIVE)), owner=None, heartbeat=None)


def expired(store: Store) -> list[Job]:
    """Jobs past their expiry time (their files and rows are to be removed)."""
    tables.ensure(store.engine)
    now = instant.now_us()
    with store.engine.connect() as conn:
        rows = conn.execute(select(tables.job).where(_J.expires.is_not(None), _J.expires < now)).all()
    return [_job(r) for r in rows]


def remove(store: Store, job_id: str) -> None:
    """Delete the job row."""
    with store.engine.begin() as conn:
        conn.execute(delete(tables.job).where(_J.id == job_id))


def active_count(store: Store, requester: Requester) -> int:
    """How many jobs of a requester are accepted or in progress."""
    with store.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(tables.job)
                .where(requester.condition(), _J.status.in_(ACTIVE))
            ).scalar_one()
        )


@dataclass(frozen=True)
class QueueStats:
    """The job queue as an operator watches it (docs/operations.md, /metrics)."""

    depth: dict[str, int]  # active jobs by status (accepted: waiting for a worker; in-progress)
    oldest_created_us: int | None  # when the oldest active job was created; None: no active job


def queue_stats(store: Store) -> QueueStats:
    """Active jobs by status and the creation time of the oldest one (one grouped query)."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(_J.status, func.count(), func.min(_J.created))
            .where(_J.status.in_(ACTIVE))
            .group_by(_J.status)
        ).all()
    depth = {status: 0 for status in ACTIVE}
    oldest: int | None = None
    for status, count, created in rows:
        depth[status] = int(count)
        oldest = int(created) if oldest is None else min(oldest, int(created))
    return QueueStats(depth, oldest)
