"""`/metrics` (issue 13, acceptance 1): parsed with prometheus-client's own parser before and after
traffic, the request counters and latency histograms move by exactly the traffic sent; the pool and job
queue gauges say what the store holds; the endpoint answers only the bearer of FHIR_METRICS_TOKEN."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from fhir_server import instant
from fhir_server.app import create_app
from fhir_server.jobs import job, tables
from fhir_server.settings import Settings
from fhir_server.store.sql import Store
from tests import factories
from tests.conftest import BASE

SECRET = "metrics-secret-for-tests"
FHIR = {"Content-Type": "application/fhir+json"}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def metrics_client(store: Store, app_settings: Settings) -> Iterator[TestClient]:
    settings = app_settings.model_copy(update={"metrics_token": SECRET})
    with TestClient(create_app(settings, store=store), base_url=BASE, raise_server_exceptions=False) as c:
        yield c


def scrape(client: TestClient) -> Samples:
    r = client.get("/metrics", headers={"Authorization": f"Bearer {SECRET}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_counters_and_histograms_move_with_traffic(metrics_client: TestClient) -> None:
    c = metrics_client
    before = scrape(c)
    pid = c.post("/Patient", json=factories.patient(), headers=FHIR).json()["id"]
    for _ in range(3):
        assert c.get(f"/Patient/{pid}").status_code == 200
    assert c.get("/Patient/no-such-id").status_code == 404
    assert c.get("/Patient", params={"family": "Smith"}).status_code == 200
    assert c.get("/Observation", params={"_count": "x"}).status_code == 400
    after = scrape(c)

    req = "fhir_http_requests_total"
    assert delta(before, after, req, interaction="create", type="Patient", status="201") == 1
    assert delta(before, after, req, interaction="read", type="Patient", status="200") == 3
    assert delta(before, after, req, interaction="read", type="Patient", status="404") == 1
    assert delta(before, after, req, interaction="search-type", type="Patient", status="200") == 1
    assert delta(before, after, req, interaction="search-type", type="Observation", status="400") == 1
    # the first scrape itself was counted (under its own label), not as FHIR traffic
    assert delta(before, after, req, interaction="metrics", type="", status="200") == 1

    hist = "fhir_http_request_duration_seconds"
    assert delta(before, after, f"{hist}_count", interaction="read") == 4
    assert delta(before, after, f"{hist}_bucket", interaction="read", le="+Inf") == 4
    assert delta(before, after, f"{hist}_sum", interaction="read") > 0
    buckets = sorted(
        (float(dict(labels)["le"]), v)
        for (name, labels), v in after.items()
        if name == f"{hist}_bucket" and dict(labels)["interaction"] == "read"
    )
    counts = [v for _, v in buckets]
    assert counts == sorted(counts)  # cumulative buckets never decrease
    assert value(after, "fhir_http_requests_in_progress") == 1  # the scrape itself


def test_pool_and_job_queue_gauges(metrics_client: TestClient, store: Store) -> None:
    samples = scrape(metrics_client)
    assert value(samples, "fhir_db_up") == 1
    assert value(samples, "fhir_db_pool_size") == store.engine.pool.size()  # type: ignore[attr-defined]
    assert value(samples, "fhir_db_pool_checked_out") >= 0
    assert value(samples, "fhir_job_queue_depth", status="accepted") == 0
    assert value(samples, "fhir_job_oldest_age_seconds") == 0

    def accepted(minutes_ago: int) -> Any:
        created = job.create(
            store,
            kind="export",
            request_url=f"{BASE}/$export",
            params={},
            transaction_time=0,
            max_active=10,
            retry_after=1,
            client_id="c",
        )
        with store.engine.begin() as conn:
            conn.execute(
                update(tables.job)
                .where(tables.job.c.id == created.id)
                .values(created=instant.now_us() - minutes_ago * 60_000_000)
            )
        return created

    accepted(10)
    running = accepted(2)
    assert job.claim(store, running.id, "w1", 30) is not None
    samples = scrape(metrics_client)
    assert value(samples, "fhir_job_queue_depth", status="accepted") == 1
    assert value(samples, "fhir_job_queue_depth", status="in-progress") == 1
    assert 600 <= value(samples, "fhir_job_oldest_age_seconds") < 660


def test_metrics_need_the_configured_secret(store: Store, app_settings: Settings) -> None:
    with TestClient(create_app(app_settings, store=store), base_url=BASE) as off:
        assert off.get("/metrics").status_code == 404  # no FHIR_METRICS_TOKEN: no endpoint
    settings = app_settings.model_copy(update={"metrics_token": SECRET})
    with TestClient(create_app(settings, store=store), base_url=BASE) as on:
        assert on.get("/metrics").status_code == 401
        assert on.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert on.get("/metrics", headers={"Authorization": f"Basic {SECRET}"}).status_code == 401
        assert on.get("/metrics", headers={"Authorization": f"Bearer {SECRET}"}).status_code == 200


def test_smart_tokens_do_not_open_metrics(store: Store, smart_settings: Settings) -> None:
    """Isolation: /metrics is the operator's, through its own secret; no SMART token of a patient, a
    user or a system client (even system/*.cruds) reads it."""
    from fhir_server.auth import clients
    from fhir_server.auth.operator_token import mint

    with store.write() as tx:
        clients.register(tx.conn, "ops", "public", redirect_uris=["http://localhost/cb"], name="ops")
    token = mint(store, smart_settings, "ops", "system/*.cruds", 5)
    settings = smart_settings.model_copy(update={"metrics_token": SECRET})
    with TestClient(create_app(settings, store=store), base_url=BASE) as c:
        assert c.get("/Patient", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert c.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        assert c.get("/metrics", headers={"Authorization": f"Bearer {SECRET}"}).status_code == 200
