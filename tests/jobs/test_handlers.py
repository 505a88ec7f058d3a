"""Job kinds are registered handlers: a new kind runs through the queues without touching the worker (https://hl7.org/fhir/uv/bulkdata/STU2/export.html#bulk-data-status-request)."""

from __future__ import annotations

import ast
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from fhir_server import instant
from fhir_server.jobs import handlers, job, queue, worker
from fhir_server.settings import Settings
from fhir_server.store.sql import Store
from tests.bulk_support import settings_for

REDIS = "redis://127.0.0.1:6379/0"
given_up: list[tuple[str, str]] = []


def _count(store: Store, settings: Settings, current: job.Job, owner: str, alive: Callable[[], bool]) -> None:
    """A job kind of this test module: complete with an output naming the job's number."""
    if current.params.get("broken"):
        raise RuntimeError("no count today")
    item = {"type": "count", "url": "", "count": int(current.params["n"])}
    job.complete(store, current.id, owner, outputs=[item], errors=[], ttl_seconds=60)


def _remember(store: Store, settings: Settings, current: job.Job, reason: str) -> None:
    given_up.append((current.id, reason))


COUNT = handlers.Handler("test-count", _count, _remember)


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    handlers.register(COUNT)
    given_up.clear()
    yield
    handlers.unregister(COUNT.kind)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_for(tmp_path)


def _job(store: Store, kind: str = COUNT.kind, **params: object) -> job.Job:
    return job.create(
        store,
        kind=kind,
        request_url="http://testserver/$count",
        params={"n": 7, **params},
        transaction_time=instant.now_us(),
        max_active=100,
        retry_after=1,
    )


def _finished(store: Store, job_id: str, timeout: float = 30.0) -> job.Job:
    deadline = time.monotonic() + timeout
    while (current := job.get(store, job_id)) is not None and current.status in ("accepted", "in-progress"):
        assert time.monotonic() < deadline, current
        time.sleep(0.02)
    assert current is not None
    return current


def test_a_kind_registered_by_a_test_module_runs_on_the_in_process_queue(
    store: Store, settings: Settings
) -> None:
    created = _job(store)
    queue.ThreadQueue(store, settings).submit(created.id)
    done = _finished(store, created.id)
    assert (done.status, done.outputs[0]["count"]) == ("completed", 7)


@pytest.mark.redis
def test_a_kind_registered_by_a_test_module_runs_on_a_celery_worker(store: Store, tmp_path: Path) -> None:
    from celery.contrib.testing.worker import start_worker

    settings = settings_for(tmp_path, redis_url=REDIS, job_queue=f"fhir-test-kind-{uuid.uuid4().hex[:8]}")
    created = _job(store)
    try:
        with start_worker(queue.celery_app(settings, store=store), pool="solo", perform_ping_check=False):
            queue.CeleryQueue(settings).submit(created.id)
            done = _finished(store, created.id)
    finally:
        redis.Redis.from_url(REDIS).delete(settings.job_queue)
    assert (done.status, done.outputs[0]["count"]) == ("completed", 7)


def test_a_run_that_raises_fails_the_job_and_tells_its_handler(store: Store, settings: Settings) -> None:
    created = _job(store, broken=True)
    assert worker.run(store, settings, created.id) == "failed"
    failed = job.get(store, created.id)
    assert failed is not None and failed.status == "failed"
    assert given_up == [(created.id, failed.reason)]
    # the requester reads the kind of failure; the exception's text stays in the server log
    assert "internal error (RuntimeError)" in str(failed.reason) and created.id in str(failed.reason)
    assert "no count today" not in str(failed.reason)


def test_a_job_of_an_unregistered_kind_fails_with_a_reason(store: Store, settings: Settings) -> None:
    created = _job(store, kind="test-unknown")
    assert worker.run(store, settings, created.id) == "failed"
    failed = job.get(store, created.id)
    assert failed is not None and "no handler is registered for job kind 'test-unknown'" in str(failed.reason)


def test_registering_another_handler_for_a_known_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        handlers.register(handlers.Handler(COUNT.kind, _count))
    handlers.register(COUNT)  # the same handler again is harmless


def test_the_worker_imports_no_operation_and_names_no_job_kind() -> None:
    source = Path(worker.__file__).read_text()
    imported: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            base = "fhir_server.jobs" if node.level == 1 else "fhir_server" if node.level == 2 else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            imported += [module] + [f"{module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
    assert imported and not [m for m in imported if m.startswith("fhir_server.operations")], imported
    kinds = {"export", "import", "ingest"}
    literals = {n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant)}
    assert not kinds & literals
