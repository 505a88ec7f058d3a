"""Several API processes and workers on one database share every state that must be shared (docs/operations.md "Several processes").

Each "process" here is its own app over its own Store and engine on the same database and the same
data_dir, as two `fhir-server serve` processes would be: replayed client assertions (jti), access
tokens, paging cursors, bulk job limits and export files work across them. Two `fhir-server worker`
processes on one Redis queue share exports, each delivered to both, and every resource is in the
output once.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from fhir_server.api.deps import get_principal
from fhir_server.app import create_app
from fhir_server.auth.login_throttle import PAIR
from fhir_server.jobs import job, queue
from fhir_server.store.engine import make_engine
from fhir_server.store.sql import Store
from tests import factories
from tests.auth.smart_flow import (
    Authorization,
    add_user,
    assertion,
    bearer,
    client_credentials,
    log_in,
    public_jwks,
    register,
    rsa_key,
)
from tests.bulk_support import BASE, Caller, kick_off, put, settings_for, start_worker, wait_done

REDIS = "redis://127.0.0.1:6379/0"
WORKER_ENV = {
    "FHIR_BULK_CHECKPOINT_ROWS": "200",
    "FHIR_BULK_FILE_MAX_RESOURCES": "500",
    "FHIR_JOB_THREADS": "2",
}  # this test's `fhir-server worker` processes
KEY = rsa_key("scale-1")


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture
def two_apps(store: Store, tmp_path: Path) -> Iterator[tuple[TestClient, TestClient]]:
    """Two apps, each with its own engine and pool on the one database, sharing a data_dir."""
    settings = settings_for(tmp_path, bulk_max_active_per_client=1)
    other = Store(make_engine(_url(store.engine), pool_size=2), base=settings.base)
    with (
        TestClient(create_app(settings, store=store), base_url=BASE, raise_server_exceptions=False) as a,
        TestClient(create_app(settings, store=other), base_url=BASE, raise_server_exceptions=False) as b,
    ):
        yield a, b
    other.engine.dispose()


def test_a_client_assertion_used_on_one_process_is_a_replay_on_the_other(
    store: Store, two_apps: tuple[TestClient, TestClient]
) -> None:
    a, b = two_apps
    register(store, "backend", "asymmetric", jwks=public_jwks(KEY), scope="system/*.rs")
    signed = assertion(KEY, "RS384", "backend")
    first = client_credentials(a, signed)
    assert first.status_code == 200, first.text
    replay = client_credentials(b, signed)
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_client"
    # The token process A issued is accepted by process B (one signing key in the shared data_dir).
    token = first.json()["access_token"]
    assert b.get("/Patient", headers=bearer(token)).status_code == 200


def test_failed_logins_on_one_process_throttle_the_login_page_of_the_other(
    store: Store, two_apps: tuple[TestClient, TestClient]
) -> None:
    """The login throttle lives in the database (auth/login_throttle.py), not in a process."""
    a, b = two_apps
    register(store)
    add_user(store, "anna", "Patient/p1")
    for _ in range(PAIR.free):
        page = a.get(Authorization().url())
        assert log_in(a, page.text, "anna", "wrong password").status_code == 401
    page = b.get(Authorization().url())
    throttled = log_in(b, page.text, "anna")  # the right password, at the other process
    assert throttled.status_code == 429, throttled.text
    assert 0 < int(throttled.headers["retry-after"]) <= PAIR.base


def test_a_paging_cursor_from_one_process_is_followed_on_the_other(
    store: Store, two_apps: tuple[TestClient, TestClient]
) -> None:
    a, b = two_apps
    register(store, "backend", "asymmetric", jwks=public_jwks(KEY), scope="system/*.rs")
    put(store, *(factories.patient(family=f"Page{i}") for i in range(5)))
    token = client_credentials(a, assertion(KEY, "RS384", "backend")).json()["access_token"]
    page = a.get("/Patient?_count=2", headers=bearer(token)).json()
    following = next(link["url"] for link in page["link"] if link["relation"] == "next")
    answered = b.get(following.removeprefix(BASE), headers=bearer(token))
    assert answered.status_code == 200, answered.text
    assert len(answered.json()["entry"]) == 2


def test_the_limit_of_active_bulk_jobs_holds_across_processes(
    store: Store, two_apps: tuple[TestClient, TestClient]
) -> None:
    a, b = two_apps
    for app in (a, b):
        app.app.dependency_overrides[get_principal] = Caller()  # type: ignore[attr-defined]
    # Without workers (the apps' in-process queues are replaced), the first job stays accepted.
    submitted: list[str] = []
    for app in (a, b):
        app.app.state.job_queue = _Recording(submitted)  # type: ignore[attr-defined]
    headers = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
    assert a.get("/$export", headers=headers).status_code == 202
    refused = b.get("/$export", headers=headers)
    assert refused.status_code == 429, refused.text
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM job"))


class _Recording:
    def __init__(self, into: list[str]) -> None:
        self.into = into

    def submit(self, job_id: str) -> None:
        self.into.append(job_id)


@pytest.mark.redis
@pytest.mark.slow
def test_exports_shared_by_two_workers_and_two_api_processes_yield_each_resource_once(
    store: Store, tmp_path: Path
) -> None:
    queue_name = f"fhir-test-scale-{uuid.uuid4().hex[:8]}"
    settings = settings_for(tmp_path, redis_url=REDIS, job_queue=queue_name)
    ids = set(put(store, *(factories.patient(family=f"W{i}") for i in range(1500))))
    other = Store(make_engine(_url(store.engine), pool_size=2), base=settings.base)
    log = tmp_path / "workers.log"
    workers = [start_worker(settings, _url(store.engine), log, **WORKER_ENV) for _ in range(2)]
    try:
        kicked_on = create_app(settings, store=store)
        polled_on = create_app(settings, store=other)
        for app in (kicked_on, polled_on):
            app.dependency_overrides[get_principal] = Caller()
        with (
            TestClient(kicked_on, base_url=BASE, raise_server_exceptions=False) as a,
            TestClient(polled_on, base_url=BASE, raise_server_exceptions=False) as b,
        ):
            urls = [kick_off(a, params={"_type": "Patient"}) for _ in range(3)]
            again = queue.CeleryQueue(settings)
            for url in urls:  # each job delivered a second time: both workers may get it
                again.submit(url.rsplit("/", 1)[1])
            for url in urls:
                done = wait_done(b, url.removeprefix(BASE), timeout=120)
                assert done.status_code == 200, f"{done.text}\n{log.read_text()[-3000:]}"
                seen: list[str] = []
                for item in done.json()["output"]:
                    file = b.get(item["url"].removeprefix(BASE))
                    assert file.status_code == 200
                    seen += [orjson.loads(line)["id"] for line in file.content.splitlines() if line]
                assert len(seen) == len(ids) and set(seen) == ids
                finished = job.get(store, url.rsplit("/", 1)[1])
                assert finished is not None and finished.attempts == 1  # run once, never twice
    finally:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        redis.Redis.from_url(REDIS).delete(queue_name)
        other.engine.dispose()
        with store.engine.begin() as conn:
            conn.execute(text("DELETE FROM job"))
