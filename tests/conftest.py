"""Shared fixtures: a store on SQLite and on PostgreSQL, an app and an HTTP client on top of it.

Every store test runs on both databases (FHIR_TEST_BACKENDS=sqlite limits that explicitly; a
PostgreSQL that cannot be reached is an error, never a silent skip). Each test session gets its
own PostgreSQL database, and each test starts from empty tables.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from fhir_server.app import create_app
from fhir_server.settings import Settings
from fhir_server.store import schema
from fhir_server.store.engine import make_engine
from fhir_server.store.migrate import upgrade
from fhir_server.store.sql import Store
from tests.rolled_back import rolled_back_store

settings.register_profile(
    "ci", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# `HYPOTHESIS_PROFILE=deep` hunts for rare inputs before CI's random seed finds them
settings.register_profile("deep", parent=settings.get_profile("ci"), max_examples=1500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

PG_ADMIN = os.environ.get("FHIR_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = [b for b in os.environ.get("FHIR_TEST_BACKENDS", "sqlite,postgres").split(",") if b]
# The audit trail (docs/audit.md) writes AuditEvents in the background; tests of other areas count
# resources and change events, so it is off unless a test turns it on (tests/audit/).
os.environ.setdefault("FHIR_AUDIT", "false")
BASE = "http://testserver"


def _pg_database(worker: str) -> Iterator[str]:
    name = f"fhir_test_{worker}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A migrated database of each backend, shared by the session."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("db") / "fhir.db"
        eng = make_engine(f"sqlite:///{path}")
        upgrade(eng)
        yield eng
        eng.dispose()
    else:
        gen = _pg_database(worker)
        url = next(gen)
        eng = make_engine(url)
        upgrade(eng)
        yield eng
        eng.dispose()
        next(gen, None)


def _empty(engine: Engine) -> None:
    names = [t.name for t in schema.metadata.sorted_tables]
    if engine.dialect.name == "postgresql":
        _truncate(engine, names)
        return
    with engine.begin() as conn:
        for name in names:
            conn.execute(text(f"DELETE FROM {name}"))


def _truncate(engine: Engine, names: list[str]) -> None:
    """TRUNCATE waits for every open transaction on the tables. A background job thread of an earlier
    test that still holds one while it waits for a lock behind this TRUNCATE would wait forever (the
    cycle runs through Python, PostgreSQL cannot see it): after 30 s, such sessions ('idle in
    transaction') are ended, said on stderr, and the TRUNCATE is tried again."""
    for attempt in range(3):
        try:
            with engine.begin() as conn:
                conn.execute(text("SET LOCAL lock_timeout = '30s'"))
                conn.execute(text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY"))
            return
        except OperationalError as exc:
            if "lock timeout" not in str(exc) or attempt == 2:
                raise
        with engine.begin() as conn:
            ended = conn.execute(
                text(
                    "SELECT pid, left(query, 120), pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND state = 'idle in transaction'"
                )
            ).all()
        sys.stderr.write(f"\nconftest: TRUNCATE blocked; ended sessions left open: {ended}\n")


# Engines whose tables may hold rows a test left behind (a rolled-back test leaves none).
_DIRTY: set[Engine] = set()


@pytest.fixture
def store(engine: Engine, request: pytest.FixtureRequest) -> Iterator[Store]:
    """An empty store on the parametrised backend. A test marked `rolled_back` (tests/rolled_back.py)
    runs in one transaction that is rolled back at its end; the others start from emptied tables."""
    if request.node.get_closest_marker("rolled_back") is None:
        _empty(engine)
        _DIRTY.add(engine)
        yield Store(engine, check_references=True, base=BASE)
        return
    if engine in _DIRTY:
        _empty(engine)
        _DIRTY.discard(engine)
    with rolled_back_store(engine, check_references=True, base=BASE) as rolled_back:
        yield rolled_back
    with engine.connect() as conn:  # a write that went around the store was committed: empty next time
        if conn.execute(text("SELECT 1 FROM resource_version LIMIT 1")).first() is not None:
            _DIRTY.add(engine)


@pytest.fixture(autouse=True)
def _engine_use(request: pytest.FixtureRequest) -> None:
    """A test that reaches the engine other than through a rolled-back store may leave rows behind."""
    if "engine" in request.fixturenames and request.node.get_closest_marker("rolled_back") is None:
        _DIRTY.add(request.getfixturevalue("engine"))


@pytest.fixture
def app_settings() -> Settings:
    return Settings(base_url=BASE, allow_anonymous=True, max_body_bytes=1_000_000)


@pytest.fixture
def client(store: Store, app_settings: Settings) -> Iterator[TestClient]:
    """An HTTP client on an app over the empty store."""
    app = create_app(app_settings, store=store)
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="session")
def smart_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder shared by the session, so the server's signing key is generated once."""
    return tmp_path_factory.mktemp("smart-data")


@pytest.fixture
def smart_settings(smart_data_dir: Path) -> Settings:
    """A server that requires SMART access tokens (anonymous access off)."""
    return Settings(
        base_url=BASE,
        allow_anonymous=False,
        max_body_bytes=1_000_000,
        data_dir=smart_data_dir,
        admin_secret="test-admin-secret",
    )


@pytest.fixture
def smart_client(store: Store, smart_settings: Settings) -> Iterator[TestClient]:
    """An HTTP client on an app that enforces SMART tokens; redirects are not followed."""
    app = create_app(smart_settings, store=store)
    with TestClient(app, base_url=BASE, raise_server_exceptions=False, follow_redirects=False) as c:
        yield c


SYNTHEA_DIR = Path(
    os.environ.get("FHIR_SYNTHEA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "synthea-r4")
)


def synthea_files() -> list[Path]:
    """The Synthea transaction bundles, organisations and practitioners first (they are referenced)."""
    files = sorted(SYNTHEA_DIR.glob("*.json"))
    first = [f for f in files if f.name.startswith(("hospitalInformation", "practitionerInformation"))]
    return first + [f for f in files if f not in first]


@pytest.fixture(scope="session", params=BACKENDS)
def synthea(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Store, list[dict]]]:
    """A store with every Synthea bundle loaded as a transaction, and the transaction responses.

    Sample data from ../shared/data (third-party, synthetic): absent on a bare clone, where the tests
    that need it are skipped with that reason.
    """
    files = synthea_files()
    if not files:
        pytest.skip(f"Synthea sample data not present at {SYNTHEA_DIR}")
    import orjson

    from fhir_server.interactions.context import Context
    from fhir_server.interactions.transaction import transaction

    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path_factory.mktemp('synthea') / 'fhir.db'}")
        gen = None
    else:
        gen = _pg_database(f"synthea_{worker}")
        eng = make_engine(next(gen))
    upgrade(eng)
    store = Store(eng, check_references=True, base=BASE)
    ctx = Context(store=store, settings=Settings(base_url=BASE))
    responses = [transaction(ctx, orjson.loads(f.read_bytes())) for f in files]
    yield store, responses
    eng.dispose()
    if gen is not None:
        next(gen, None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked `postgres` proves PostgreSQL behaviour (e.g. its planner): it runs with the
    PostgreSQL store only, and its SQLite variant is deselected rather than skipped."""
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_sqlite = callspec is not None and callspec.params.get("engine") == "sqlite"
        (drop if on_sqlite and item.get_closest_marker("postgres") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
