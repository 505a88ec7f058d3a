"""Celery on the real Redis, or in-process threads (https://docs.celeryq.dev/en/stable/userguide/testing.html).

The same job code runs either way."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from fhir_server.api.deps import get_principal
from fhir_server.app import create_app
from fhir_server.jobs import queue
from fhir_server.settings import Settings
from fhir_server.store.sql import Store
from tests import factories
from tests.bulk_support import BASE, Caller, export, lines, put, settings_for

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def celery_settings(tmp_path: Path) -> Iterator[Settings]:
    name = f"fhir-test-jobs-{uuid.uuid4().hex[:8]}"
    yield settings_for(tmp_path, redis_url=REDIS, job_queue=name)
    redis.Redis.from_url(REDIS).delete(name)


@pytest.mark.redis
def test_a_celery_worker_on_redis_runs_an_export_end_to_end(store: Store, celery_settings: Settings) -> None:
    """With FHIR_REDIS_URL the API sends the job to Redis; a Celery worker runs it."""
    from celery.contrib.testing.worker import start_worker

    ids = put(store, *[factories.patient(f"P{i}") for i in range(30)])
    worker_app = queue.celery_app(celery_settings, store=store)
    app = create_app(celery_settings, store=store)
    app.dependency_overrides[get_principal] = Caller()
    with (
        start_worker(worker_app, pool="solo", perform_ping_check=False, shutdown_timeout=30),
        TestClient(app, base_url=BASE, raise_server_exceptions=False) as client,
    ):
        manifest = export(client, params={"_type": "Patient"})
        assert isinstance(app.state.job_queue, queue.CeleryQueue)
        assert sorted(p["id"] for p in lines(client, manifest)["Patient"]) == sorted(ids)


def test_without_redis_the_api_process_runs_jobs_on_threads(store: Store, tmp_path: Path) -> None:
    put(store, factories.patient())
    app = create_app(settings_for(tmp_path), store=store)
    app.dependency_overrides[get_principal] = Caller()
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as client:
        manifest = export(client, params={"_type": "Patient"})
    assert isinstance(app.state.job_queue, queue.ThreadQueue)
    assert manifest["output"][0]["count"] == 1


def test_the_worker_command_needs_redis(tmp_path: Path) -> None:
    assert queue.run_worker(settings_for(tmp_path)) == 2
