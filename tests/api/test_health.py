"""`/healthz` and `/readyz` (issue 13, acceptance 1): ready turns 503 when the database really goes away
(PostgreSQL: the database is dropped; SQLite: its file is replaced by something that cannot be opened)
or its schema is not current, and 200 again once it is back; Redis is checked when configured."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from fhir_server.app import create_app
from fhir_server.settings import Settings
from fhir_server.store.engine import make_engine
from fhir_server.store.migrate import upgrade
from fhir_server.store.sql import Store
from tests.conftest import BASE, PG_ADMIN


def _client(engine: Engine, settings: Settings) -> TestClient:
    store = Store(engine, base=BASE)
    return TestClient(create_app(settings, store=store), base_url=BASE, raise_server_exceptions=False)


def _ready(client: TestClient) -> tuple[int, dict[str, str]]:
    r = client.get("/readyz")
    assert r.headers["cache-control"] == "no-store"
    return r.status_code, r.json()["checks"]


def test_healthz_is_public_and_answers_without_the_database(client: TestClient) -> None:
    r = client.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


@pytest.fixture
def own_database(engine: Engine, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A database of the parametrised backend that the test may break: (kind, url)."""
    if engine.dialect.name == "sqlite":
        yield "sqlite", f"sqlite:///{tmp_path / 'ready.db'}"
        return
    name = f"fhir_ready_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield "postgres", PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_readyz_is_503_while_the_database_is_gone_then_200(
    own_database: tuple[str, str], app_settings: Settings, tmp_path: Path
) -> None:
    kind, url = own_database
    eng = make_engine(url)
    upgrade(eng)
    with _client(eng, app_settings) as c:
        assert _ready(c) == (200, {"database": "ok"})
        assert c.get("/Patient").status_code == 200

        if kind == "postgres":
            name = url.rsplit("/", 1)[1]
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')  # ends the pool's sessions too
        else:
            path = Path(url.removeprefix("sqlite:///"))
            eng.dispose()
            path.rename(tmp_path / "away.db")
            path.mkdir()  # a directory where the file was: SQLite cannot open it
        assert _ready(c) == (503, {"database": "unreachable"})
        assert c.get("/healthz").status_code == 200  # alive all the same
        assert c.get("/Patient").status_code >= 500 or kind == "sqlite"

        if kind == "postgres":
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')  # back, but empty
        else:
            path.rmdir()  # SQLite creates an empty file
        assert _ready(c) == (503, {"database": "migrations pending"})

        if kind == "postgres":
            upgrade(eng)
        else:
            eng.dispose()
            path.unlink()
            (tmp_path / "away.db").rename(path)
        assert _ready(c) == (200, {"database": "ok"})
        assert c.get("/Patient").status_code == 200
    eng.dispose()


def test_readyz_is_503_when_the_configured_redis_is_unreachable(store: Store, app_settings: Settings) -> None:
    settings = app_settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    with _client(store.engine, settings) as c:
        r = c.get("/readyz")
        assert (r.status_code, r.json()["checks"]) == (503, {"database": "ok", "redis": "unreachable"})


@pytest.mark.redis
def test_readyz_checks_the_configured_redis(store: Store, app_settings: Settings) -> None:
    settings = app_settings.model_copy(update={"redis_url": "redis://127.0.0.1:6379/0"})
    with _client(store.engine, settings) as c:
        assert _ready(c) == (200, {"database": "ok", "redis": "ok"})


def test_readyz_gives_up_on_a_hung_check(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from fhir_server.api import health

    monkeypatch.setattr(health, "CHECK_SECONDS", 0.2)
    monkeypatch.setattr(health, "_database", lambda store: time.sleep(2) or "ok")
    started = time.monotonic()
    assert _ready(client) == (503, {"database": "timeout"})
    assert time.monotonic() - started < 1.5
