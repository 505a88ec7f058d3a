"""Running a job under a lease (https://hl7.org/fhir/uv/bulkdata/STU2/export.html#bulk-data-status-request).

Also sweeping up jobs whose worker died.

`run(store, settings, job_id)` is the one entry point, called by Celery tasks and by the in-process
executor alike. It claims the job (a no-op if another worker holds a live lease or the job is
finished, so duplicate deliveries are harmless), renews the lease from a heartbeat thread while the
job runs, and records the outcome. `sweep(...)` finds active jobs whose lease ran out (the worker was
killed) and resubmits them, or fails them with a reason after `job_max_attempts` runs, so no job stays
"in progress" forever; it also deletes expired jobs and their files.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType

from ..errors import FhirError
from ..redacted_traceback import format_exception
from ..settings import Settings
from ..store.sql import Store
from . import handlers, job, output_files
from .handlers import LeaseLost

log = logging.getLogger("fhir_server.jobs")


def _reason(current: job.Job, exc: Exception) -> str:
    """What the requester reads: a FHIR error's message, else only the kind of failure. An internal
    exception's text (SQL, file paths, a resource's content) stays in the server log, under the job id."""
    if isinstance(exc, FhirError | handlers.UnknownKind):
        return f"The {current.kind} failed: {exc}"[:1000]
    return (
        f"The {current.kind} failed with an internal error ({type(exc).__name__}); "
        f"the server log has the details under job {current.id}"
    )


def _give_up(
    store: Store, settings: Settings, current: job.Job, reason: str, owner: str | None = None
) -> None:
    """Fail the job with a reason, then let its kind clean up (its run did not see this through)."""
    failed = job.fail(store, current.id, reason, owner=owner, ttl_seconds=settings.bulk_file_ttl_seconds)
    handler = handlers.find(current.kind)
    if failed and handler is not None:
        handler.given_up(store, settings, current, reason)


_LIVE_OWNERS: set[str] = set()  # leases this process is renewing right now
_LIVE_LOCK = threading.Lock()


def _renewing_here(owner: str | None) -> bool:
    """True when this process holds a live Lease for `owner` (its heartbeat is late, not dead)."""
    with _LIVE_LOCK:
        return owner in _LIVE_OWNERS


class Lease:
    """Renews a job's lease every third of the lease time until closed; `alive()` turns False when a
    renewal finds the job cancelled or taken over."""

    def __init__(self, store: Store, job_id: str, owner: str, lease_seconds: float) -> None:
        self.store, self.job_id, self.owner = store, job_id, owner
        self.interval = max(0.05, lease_seconds / 3)
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{job_id[:8]}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if not job.beat(self.store, self.job_id, self.owner):
                    self._lost.set()
                    return
            except Exception:  # a database hiccup: try again at the next beat
                log.warning("Could not renew the lease of job %s", self.job_id, exc_info=True)

    def alive(self) -> bool:
        return not self._lost.is_set()

    def __enter__(self) -> Lease:
        with _LIVE_LOCK:
            _LIVE_OWNERS.add(self.owner)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        with _LIVE_LOCK:
            _LIVE_OWNERS.discard(self.owner)


def run(store: Store, settings: Settings, job_id: str) -> str:
    """Run (or resume) a job; returns what happened: done, skipped, lost or failed."""
    owner = job.worker_id()
    current = job.claim(store, job_id, owner, settings.job_lease_seconds)
    if current is None:
        return "skipped"
    if current.attempts > settings.job_max_attempts:
        reason = f"The job was interrupted {current.attempts - 1} times (its worker stopped); giving up"
        _give_up(store, settings, current, reason, owner)
        return "failed"
    with Lease(store, job_id, owner, settings.job_lease_seconds) as lease:
        try:
            handlers.handler_for(current.kind).run(store, settings, current, owner, lease.alive)
        except LeaseLost:
            after = job.get(store, job_id)
            if after is None or after.status == "cancelled":
                output_files.remove(settings.data_dir, job_id)
            return "lost"
        except Exception as exc:
            log.error("Job %s (%s) failed\n%s", job_id, current.kind, format_exception(exc))
            reason = _reason(current, exc)
            _give_up(store, settings, current, reason, owner)
            return "failed"
    return "done"


def sweep(store: Store, settings: Settings, submit: Callable[[str], None]) -> None:
    """Resubmit or fail jobs whose worker died; delete expired jobs and their files."""
    for stale in job.stale(store, settings.job_lease_seconds):
        if _renewing_here(stale.owner):
            # Its heartbeat is late (a busy database or CPU), but the run is alive in this process:
            # releasing it would start a second run of the same job beside it.
            continue
        if stale.attempts >= settings.job_max_attempts:
            reason = f"The worker running this job stopped {stale.attempts} times; giving up"
            _give_up(store, settings, stale, reason)
            log.warning("Job %s failed: %s", stale.id, reason)
        elif job.release(store, stale):
            log.info("Job %s had no live worker; resubmitting it", stale.id)
            submit(stale.id)
    for gone in job.expired(store):
        output_files.remove(settings.data_dir, gone.id)
        job.remove(store, gone.id)
