"""`/metrics` in the Prometheus text format (https://prometheus.io/docs/instrumenting/exposition_formats/).

Requests by FHIR interaction, resource type and status; latency histograms by interaction; the
database pool; the job queue (depth by status, age of the oldest active job). Each app has its own
registry (several apps in one process, as in the tests, never share counters). The endpoint answers
only a bearer of `FHIR_METRICS_TOKEN`; without that setting it does not exist (404). No label ever
holds patient data: interactions and types come from `interaction.classify` (bounded sets).
With `FHIR_WORKERS` > 1 the workers share their counters through files (prometheus-client's multiprocess
mode, `multiprocess_dir`), so a scrape answered by any worker counts every worker's requests.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from .. import instant
from ..errors import NotFound, Unauthorized
from ..jobs import job
from ..store import replicas
from ..store.sql import Store

log = logging.getLogger("fhir_server.metrics")
router = APIRouter()

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def multiprocess_dir() -> str | None:
    """PROMETHEUS_MULTIPROC_DIR: set by `fhir-server serve --workers N` (N > 1) before the workers start;
    each process then keeps its counters in files there, and a scrape of any one adds them all up."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """The app's registry and the request instruments the telemetry middleware feeds."""

    def __init__(self, store: Store) -> None:
        self.registry = CollectorRegistry()
        self.exposed = self.registry  # what /metrics serializes
        if multiprocess_dir():
            from prometheus_client.multiprocess import MultiProcessCollector

            self.exposed = CollectorRegistry()
            MultiProcessCollector(self.exposed)  # every worker's files
            self.exposed.register(StoreCollector(store))
        self.requests = Counter(
            "fhir_http_requests",
            "HTTP requests answered, by FHIR interaction, resource type and status code",
            ["interaction", "type", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "fhir_http_request_duration_seconds",
            "Time from request to the end of the response, by FHIR interaction",
            ["interaction"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "fhir_http_requests_in_progress",
            "Requests being answered now",
            registry=self.registry,
            multiprocess_mode="livesum",  # the live workers' sum
        )
        self.registry.register(StoreCollector(store))

    def observe(self, interaction: str, res_type: str, status: int, seconds: float) -> None:
        self.requests.labels(interaction, res_type, str(status)).inc()
        self.latency.labels(interaction).observe(seconds)


class StoreCollector(Collector):
    """Read at each scrape: the connection pool and the job table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Any]:
        pool: Any = self.store.engine.pool
        for name, doc, attr in (
            ("fhir_db_pool_size", "Connections the pool keeps open", "size"),
            ("fhir_db_pool_checked_out", "Pool connections in use by a request or job now", "checkedout"),
            ("fhir_db_pool_overflow", "Connections opened beyond the pool size now", "overflow"),
        ):
            if callable(getattr(pool, attr, None)):
                yield GaugeMetricFamily(name, doc, value=float(max(0, getattr(pool, attr)())))
        yield from _replica_metrics(self.store)
        up = GaugeMetricFamily("fhir_db_up", "1 when the last scrape could query the database")
        try:
            stats = job.queue_stats(self.store)
        except SQLAlchemyError as exc:  # a scrape during an outage still answers (and says so)
            log.warning("metrics: the job queue could not be read (%s)", type(exc).__name__)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        depth = GaugeMetricFamily(
            "fhir_job_queue_depth", "Active background jobs by status", labels=["status"]
        )
        for status, count in sorted(stats.depth.items()):
            depth.add_metric([status], float(count))
        yield depth
        age = 0.0
        if stats.oldest_created_us is not None:
            age = max(0.0, (instant.now_us() - stats.oldest_created_us) / 1_000_000)
        yield GaugeMetricFamily(
            "fhir_job_oldest_age_seconds", "Age of the oldest accepted or running job (0: none)", value=age
        )


def _replica_metrics(store: Store) -> Iterator[Any]:
    """Reads by target (`replica`, or the primary and why) and each replica's state, in this process."""
    routing = store.replicas
    if routing is None:
        return
    reads = CounterMetricFamily(
        "fhir_db_reads",
        "Read units of work of this process: `replica`, or on the primary and why",
        labels=["reason"],
    )
    for reason in replicas.REASONS:
        reads.add_metric([reason], float(routing.counts[reason]))
    yield reads
    up = GaugeMetricFamily("fhir_db_replica_up", "1 while the replica serves reads", labels=["replica"])
    lag = GaugeMetricFamily("fhir_db_replica_lag_seconds", "Replay lag at the last check", labels=["replica"])
    for replica in routing.replicas:
        up.add_metric([str(replica.index)], 1.0 if replica.state == "up" else 0.0)
        lag.add_metric([str(replica.index)], replica.lag_seconds)
    yield up
    yield lag


def _authorised(request: Request, secret: str | None) -> None:
    if not secret:
        raise NotFound(f"No such path: {request.url.path}")
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), secret.encode()):
        raise Unauthorized(
            "/metrics needs the bearer secret of FHIR_METRICS_TOKEN",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    _authorised(request, request.app.state.settings.metrics_token)
    registry = request.app.state.metrics.exposed
    body = await run_in_threadpool(generate_latest, registry)
    return Response(body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})
