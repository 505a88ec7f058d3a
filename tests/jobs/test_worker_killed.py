"""A worker killed mid-export (https://hl7.org/fhir/uv/bulkdata/STU2/export.html#bulk-data-status-request).

A `fhir-server worker` process is SIGKILLed in the middle of an export of 200,000 resources: after a
worker starts again the job completes from its last checkpoint, with every resource exactly once."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Connection, select, text

from fhir_server.api.deps import get_principal
from fhir_server.app import create_app
from fhir_server.jobs import job, tables
from fhir_server.store import bulk_write
from fhir_server.store.sql import Store
from tests import factories
from tests.bulk_support import BASE, Caller, kick_off, settings_for, start_worker

REDIS = "redis://127.0.0.1:6379/0"
WORKER_ENV = {
    "FHIR_JOB_LEASE_SECONDS": "2",
    "FHIR_BULK_CHECKPOINT_ROWS": "5000",
    "FHIR_BULK_FILE_MAX_RESOURCES": "50000",
    "FHIR_JOB_THREADS": "1",
}  # this test's `fhir-server worker` processes
N = 200_000


def _wait(what: str, check: Callable[[], bool], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}; worker log:\n{log.read_text()[-3000:]}")
        time.sleep(0.01)


def _lock_job_row(conn: Connection, job_id: str, sqlite: bool) -> str:
    """Block the worker's next checkpoint (and completion) while the test holds this transaction
    (SQLite: the write lock; PostgreSQL: the job row)."""
    if sqlite:
        conn.info["sqlite_begin"] = "BEGIN IMMEDIATE"
    conn.begin()
    query = select(tables.job.c.status).where(tables.job.c.id == job_id)
    return str(conn.execute(query if sqlite else query.with_for_update()).scalar_one())


@pytest.mark.redis
@pytest.mark.slow
def test_an_export_survives_its_worker_being_killed(store: Store, tmp_path: Path) -> None:
    queue_name = f"fhir-test-kill-{uuid.uuid4().hex[:8]}"
    settings = settings_for(tmp_path, redis_url=REDIS, job_queue=queue_name)
    for start in range(0, N, 1000):
        batch = [{**factories.patient(f"P{i}"), "id": f"p{i}"} for i in range(start, start + 1000)]
        bulk_write.write(store, batch, durable=False)
    bulk_write.sync(store)
    database_url = store.engine.url.render_as_string(hide_password=False)
    log = tmp_path / "worker.log"
    app = create_app(settings, store=store)
    app.dependency_overrides[get_principal] = Caller()
    first = second = None
    try:
        with TestClient(app, base_url=BASE, raise_server_exceptions=False) as client:
            job_id = kick_off(client, params={"_type": "Patient"}).rsplit("/", 1)[1]

        def current() -> job.Job:
            found = job.get(store, job_id)
            assert found is not None
            return found

        first = start_worker(settings, database_url, log, **WORKER_ENV)
        _wait("the first checkpoint", lambda: current().progress.get("after_pk", 0) > 0, 60, log)
        with store.engine.connect() as conn:
            status = _lock_job_row(conn, job_id, store.sqlite)
            assert status == "in-progress", "the export finished before the worker could be killed"
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            conn.rollback()
            conn.info.pop("sqlite_begin", None)
        stopped = current()
        assert stopped.status == "in-progress" and stopped.owner is not None
        assert 0 < stopped.progress["exported"] < N

        second = start_worker(settings, database_url, log, **WORKER_ENV)
        _wait("the job completed", lambda: current().status in ("completed", "failed"), 120, log)
        done = current()
        assert done.status == "completed", done.reason
        assert done.attempts == 2
        seen: list[str] = []
        for item in done.outputs:
            path = settings.data_dir / "bulk" / job_id / item["file"]
            rows = path.read_bytes().splitlines()
            assert len(rows) == item["count"]
            seen += [orjson.loads(row)["id"] for row in rows]
        assert len(seen) == N and set(seen) == {f"p{i}" for i in range(N)}
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        redis.Redis.from_url(REDIS).delete(queue_name)
        with store.engine.begin() as conn:
            conn.execute(text("DELETE FROM job"))
