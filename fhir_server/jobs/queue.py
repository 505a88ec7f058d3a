"""How Bulk Data jobs reach a worker (https://hl7.org/fhir/uv/bulkdata/STU2/export.html#bulk-data-kick-off-request).

With `settings.redis_url`, jobs go to a Celery queue on Redis (https://docs.celeryq.dev/en/stable/)
and run in `fhir-server worker` processes; without it, an in-process thread pool runs them. Both run
the same `worker.run(store, settings, job_id)`, which is idempotent (a job already owned or finished
is skipped) and resumable (it continues from the job's checkpoint). Workers sweep periodically, and
the API sweeps when it is polled, so a job whose worker died is resubmitted or failed with a reason.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from .. import events
from ..redacted_traceback import format_exception
from ..settings import Settings
from ..store.engine import make_engine
from ..store.sql import Store
from ..subscriptions import service as subscriptions
from . import tables, worker

log = logging.getLogger("fhir_server.jobs")
TASK = "fhir_server.jobs.run"


class JobQueue(Protocol):
    """Somewhere to send a job to be run."""

    def submit(self, job_id: str) -> None: ...


@functools.cache
def _executor(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fhir-job")


class ThreadQueue:
    """Runs jobs on a thread pool in this process."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store, self.settings = store, settings
        self.executor = _executor(max(1, settings.job_threads))

    def submit(self, job_id: str) -> None:
        self.executor.submit(_run_logged, self.store, self.settings, job_id)


class CeleryQueue:
    """Sends jobs to the Celery queue on Redis."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = celery_app(settings)

    def submit(self, job_id: str) -> None:
        self.app.send_task(TASK, args=[job_id], queue=self.settings.job_queue)


def _run_logged(store: Store, settings: Settings, job_id: str) -> str:
    try:
        return worker.run(store, settings, job_id)
    except Exception as exc:  # the job row says what failed; keep the pool thread alive
        log.error("Job %s could not be run\n%s", job_id, format_exception(exc))
        return "error"


def for_settings(store: Store, settings: Settings) -> JobQueue:
    """The queue the API submits to: Celery when Redis is configured, else threads."""
    tables.ensure(store.engine)
    if settings.redis_url:
        return CeleryQueue(settings)
    return ThreadQueue(store, settings)


class Sweeper:
    """Sweeps (worker.sweep) at most once per interval, from whoever calls `maybe()`."""

    def __init__(self, store: Store, settings: Settings, queue: JobQueue) -> None:
        self.store, self.settings, self.queue = store, settings, queue
        self.interval = max(0.5, settings.job_lease_seconds / 2)
        self._last = 0.0
        self._lock = threading.Lock()

    def maybe(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.interval:
                return
            self._last = now
        try:
            worker.sweep(self.store, self.settings, self.queue.submit)
        except Exception:
            log.warning("Sweeping the jobs failed", exc_info=True)

    def forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.maybe()
            stop.wait(self.interval)


# ---------------------------------------------------------------- Celery


def celery_app(settings: Settings, store: Store | None = None) -> Any:
    """A Celery app on the Redis broker whose task runs `worker.run` on this settings' database."""
    from celery import Celery

    app = Celery("fhir_server", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_default_queue=settings.job_queue,
        task_ignore_result=True,
        task_acks_late=False,  # the job row, not the broker, knows whether a job is done
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    holder: dict[str, Store] = {}
    if store is not None:
        holder["store"] = store

    def get_store() -> Store:
        if "store" not in holder:
            engine = make_engine(settings.database_url)
            holder["store"] = Store(engine, check_references=settings.check_references, base=settings.base)
            tables.ensure(engine)
        return holder["store"]

    @app.task(name=TASK, ignore_result=True, shared=False)
    def run_job(job_id: str) -> str:
        return _run_logged(get_store(), settings, job_id)

    app.conf.fhir_store = get_store
    return app


def run_worker(settings: Settings, concurrency: int | None = None) -> int:
    """`fhir-server worker`: consume the job queue until stopped, sweeping for jobs of dead workers."""
    if not settings.redis_url:
        log.error("fhir-server worker needs FHIR_REDIS_URL (without it, the API process runs jobs itself)")
        return 2
    app = celery_app(settings)
    store: Store = app.conf.fhir_store()
    subscriptions.install()
    events.start(store)  # with Redis the workers, not the API, deliver change events
    subscriptions.start(store, settings)  # and the Subscriptions' notifications
    sweeper = Sweeper(store, settings, CeleryQueue(settings))
    stop = threading.Event()
    thread = threading.Thread(target=sweeper.forever, args=(stop,), name="job-sweeper", daemon=True)
    thread.start()
    try:
        app.worker_main(
            [
                "worker",
                "--pool=threads",
                f"--concurrency={concurrency or settings.job_threads}",
                f"--queues={settings.job_queue}",
                f"--loglevel={settings.log_level.upper()}",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ]
        )
    finally:
        stop.set()
    return 0
