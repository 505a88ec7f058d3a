"""Read replicas (store/replicas.py) on a real streaming replica this test makes with pg_basebackup.

A primary and its replica are made by `tests/pg_cluster.py` on free ports, started and stopped here.
Evidence that the replica serves a read: with its WAL replay paused, a resource just created on the
primary is 404 there, while the primary has it.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, event, text

from fhir_server.app import create_app
from fhir_server.auth import clients
from fhir_server.auth.operator_token import mint
from fhir_server.settings import Settings
from fhir_server.store.engine import make_engine
from fhir_server.store.migrate import upgrade
from fhir_server.store.replicas import ReadRouting, ReplicaLost, reader, reader_key
from fhir_server.store.sql import Store
from tests import factories
from tests.pg_cluster import Cluster, primary_and_replica, wait_caught_up, wait_streaming

pytestmark = pytest.mark.postgres
BASE = "http://testserver"
PIN = 2.0


@pytest.fixture(scope="module")
def clusters(engine: Engine) -> Iterator[tuple[Cluster, Cluster]]:
    """A migrated primary and its replica (`engine` only keeps this in the PostgreSQL leg)."""
    with primary_and_replica() as (primary, replica):
        migrated = make_engine(primary.url("fhir"))
        upgrade(migrated)
        with Store(migrated).write() as tx:
            clients.register(tx.conn, "writer", "public", redirect_uris=["http://localhost/cb"], name="w")
            clients.register(tx.conn, "other", "public", redirect_uris=["http://localhost/cb"], name="o")
        migrated.dispose()
        yield primary, replica


class Served:
    def __init__(self, http: TestClient, store: Store, tokens: dict[str, str], settings: Settings) -> None:
        self.http, self.store, self.tokens, self.settings = http, store, tokens, settings

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def reads(self, reason: str) -> int:
        assert self.store.replicas is not None
        return self.store.replicas.counts[reason]


def _served(clusters: tuple[Cluster, Cluster], tmp_path: Path, max_lag: float) -> Iterator[Served]:
    primary, replica = clusters
    settings = Settings(
        base_url=BASE,
        data_dir=tmp_path,
        allow_anonymous=False,
        database_url=primary.url("fhir"),
        database_read_urls=replica.url("fhir"),
        replica_pin_seconds=PIN,
        replica_max_lag_seconds=max_lag,
        replica_check_seconds=0.1,
        metrics_token="scrape",
    )
    store = Store(make_engine(settings.database_url, pool_size=4), base=settings.base)
    tokens = {who: mint(store, settings, who, "system/*.cruds", 5) for who in ("writer", "other")}
    wait_caught_up(primary, replica)
    with TestClient(create_app(settings, store=store), base_url=BASE, raise_server_exceptions=False) as http:
        yield Served(http, store, tokens, settings)
    assert store.replicas is not None
    store.replicas.dispose()
    store.engine.dispose()


@pytest.fixture
def served(clusters: tuple[Cluster, Cluster], tmp_path: Path) -> Iterator[Served]:
    yield from _served(clusters, tmp_path, max_lag=3600.0)


def _paused(replica: Cluster) -> None:
    replica.sql("SELECT pg_wal_replay_pause()")


def _resumed(primary: Cluster, replica: Cluster) -> None:
    replica.sql("SELECT pg_wal_replay_resume()")
    wait_caught_up(primary, replica)


def test_searches_go_to_the_replica_writes_to_the_primary_and_a_writer_reads_its_writes(
    clusters: tuple[Cluster, Cluster], served: Served
) -> None:
    primary, replica = clusters
    http = served.http
    _paused(replica)
    try:
        created = http.post("/Patient", json=factories.patient(family="Replay"), headers=served.as_("writer"))
        assert created.status_code == 201, created.text
        pid = created.json()["id"]
        assert primary.sql(f"SELECT count(*) FROM resource WHERE res_id = '{pid}'", "fhir") == 1
        assert replica.sql(f"SELECT count(*) FROM resource WHERE res_id = '{pid}'", "fhir") == 0

        # The writer is pinned to the primary: it reads and finds its own write.
        pinned = served.reads("pinned")
        assert http.get(f"/Patient/{pid}", headers=served.as_("writer")).status_code == 200
        assert http.get("/Patient?family=Replay", headers=served.as_("writer")).json()["total"] == 1
        assert served.reads("pinned") == pinned + 2

        # Another client reads the replica, whose replay is paused: the new Patient is not there yet.
        on_replica = served.reads("replica")
        assert http.get(f"/Patient/{pid}", headers=served.as_("other")).status_code == 404
        assert http.get("/Patient?family=Replay", headers=served.as_("other")).json()["total"] == 0
        assert served.reads("replica") == on_replica + 2
    finally:
        _resumed(primary, replica)
    assert http.get(f"/Patient/{pid}", headers=served.as_("other")).status_code == 200
    assert http.get("/Patient?family=Replay", headers=served.as_("other")).json()["total"] == 1

    # The pin ends after its window: the writer's reads go to the replica again.
    time.sleep(PIN + 0.2)
    on_replica = served.reads("replica")
    assert http.get(f"/Patient/{pid}", headers=served.as_("writer")).status_code == 200
    assert served.reads("replica") == on_replica + 1


def test_a_replica_lagging_beyond_the_bound_is_skipped(
    clusters: tuple[Cluster, Cluster], tmp_path: Path
) -> None:
    primary, replica = clusters
    for served in _served(clusters, tmp_path, max_lag=1.0):
        http = served.http
        _paused(replica)
        try:
            created = http.post(
                "/Patient", json=factories.patient(family="Lag"), headers=served.as_("writer")
            )
            assert created.status_code == 201
            time.sleep(1.5)  # the replica's replay lag passes the bound
            lagging = served.reads("replica-lag")
            # Only the resource's read is routed, even from a context that already names a reader
            # (anyio copies the caller's context into TestClient's portal; a test that had set one
            # in this thread made this count 3, its token checks routed too, in a CI run).
            inherited = reader.set(reader_key("other", None))
            try:
                found = http.get(f"/Patient/{created.json()['id']}", headers=served.as_("other"))
            finally:
                reader.reset(inherited)
            assert found.status_code == 200  # answered by the primary
            assert served.reads("replica-lag") == lagging + 1
        finally:
            _resumed(primary, replica)


def test_a_stopped_replica_falls_back_to_the_primary_without_errors_and_is_used_again(
    clusters: tuple[Cluster, Cluster], served: Served
) -> None:
    primary, replica = clusters
    http = served.http
    created = http.post("/Patient", json=factories.patient(family="Down"), headers=served.as_("writer"))
    pid = created.json()["id"]
    wait_caught_up(primary, replica)
    assert http.get(f"/Patient/{pid}", headers=served.as_("other")).status_code == 200  # pools a connection
    replica.stop()
    try:
        down = served.reads("replica-down")
        for _ in range(3):
            assert http.get(f"/Patient/{pid}", headers=served.as_("other")).status_code == 200
            assert http.get("/Patient?family=Down", headers=served.as_("other")).json()["total"] == 1
        assert served.reads("replica-down") == down + 6
        scrape = http.get("/metrics", headers={"Authorization": "Bearer scrape"}).text
        families = {f.name: f for f in text_string_to_metric_families(scrape)}
        up = {s.labels["replica"]: s.value for s in families["fhir_db_replica_up"].samples}
        assert up == {"0": 0.0}
        reads = {s.labels["reason"]: s.value for s in families["fhir_db_reads"].samples}
        assert reads["replica-down"] >= 6
    finally:
        replica.start()
        wait_streaming(replica)
    time.sleep(0.2)  # past the check interval
    on_replica = served.reads("replica")
    assert http.get(f"/Patient/{pid}", headers=served.as_("other")).status_code == 200
    assert served.reads("replica") == on_replica + 1


def test_the_pin_is_shared_by_every_api_process(
    clusters: tuple[Cluster, Cluster], served: Served, tmp_path: Path
) -> None:
    primary, replica = clusters
    second = tmp_path / "second"
    second.mkdir()
    for other in _served(clusters, second, max_lag=3600.0):  # another process: its own app, store, pools
        _paused(replica)
        try:
            created = served.http.post(
                "/Patient", json=factories.patient(family="Elsewhere"), headers=served.as_("writer")
            )
            assert created.status_code == 201
            pid = created.json()["id"]
            assert other.http.get(f"/Patient/{pid}", headers=other.as_("writer")).status_code == 200
            assert other.reads("pinned") == 1
            assert other.http.get(f"/Patient/{pid}", headers=other.as_("other")).status_code == 404
        finally:
            _resumed(primary, replica)


def test_reads_that_arrive_during_the_first_check_wait_for_it(clusters: tuple[Cluster, Cluster]) -> None:
    primary, replica = clusters
    routing = ReadRouting(
        make_engine(primary.url("fhir")),
        [replica.url("fhir")],
        pin_seconds=PIN,
        max_lag_seconds=60.0,
        check_seconds=60.0,
    )
    event.listen(routing.replicas[0].engine, "connect", lambda *_: time.sleep(0.5))  # a slow first check

    def one_read(_: int) -> bool:
        reader.set("a caller who never wrote")
        with routing.connection() as conn:
            return bool(conn.execute(text("SELECT pg_is_in_recovery()")).scalar())

    with ThreadPoolExecutor(8) as pool:
        served_by_replica = list(pool.map(one_read, range(8)))
    assert all(served_by_replica)
    assert routing.counts == {"replica": 8}
    routing.dispose()


def test_a_replica_lost_during_a_read_is_a_503_to_retry_and_the_next_read_goes_to_the_primary(
    clusters: tuple[Cluster, Cluster],
) -> None:
    primary, replica = clusters
    routing = ReadRouting(
        make_engine(primary.url("fhir")),
        [replica.url("fhir")],
        pin_seconds=PIN,
        max_lag_seconds=60.0,
        check_seconds=60.0,
    )
    token = reader.set("a reader")
    try:
        with pytest.raises(ReplicaLost) as lost, routing.connection() as conn:
            assert conn.execute(text("SELECT pg_is_in_recovery()")).scalar() is True
            replica.stop()
            conn.execute(text("SELECT 1"))
        assert lost.value.status == 503 and lost.value.headers == {"Retry-After": "1"}
        with routing.connection() as conn:
            assert conn.execute(text("SELECT pg_is_in_recovery()")).scalar() is False
        assert routing.counts["replica-down"] == 1
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            replica.start()
        wait_streaming(replica)
        routing.dispose()
        reader.reset(token)
