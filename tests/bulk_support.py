"""Fixtures and helpers of the Bulk Data tests (https://hl7.org/fhir/uv/bulkdata/STU2/export.html).

`bulk_client` is an HTTP client on an app whose caller is set by the test (`bulk_caller.principal`;
None acts as a request without a token: 401), with jobs run by the in-process executor, files under
a temporary directory, and polling allowed at any pace. `http` is an HTTP client on an app that
enforces real SMART tokens, with the `SMART_APP` client registered (the isolation tests).
`start_worker` starts a `fhir-server worker` process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.auth import scopes
from fhir_server.auth.principal import Principal
from fhir_server.errors import Unauthorized
from fhir_server.settings import Settings
from fhir_server.store.sql import Store
from tests.auth.smart_flow import register

BASE = "http://testserver"
SYSTEM_READ = "system/*.rs"
SMART_APP = "demo-app"  # the client the isolation tests mint their tokens for


def system_client(client_id: str = "bulk-client", scope: str = SYSTEM_READ) -> Principal:
    """A Backend Services client's principal with the given scopes."""
    return Principal(client_id=client_id, kind="system", scopes=scopes.parse(scope))


class Caller:
    """Who the next requests come from (None: no token)."""

    def __init__(self) -> None:
        self.principal: Principal | None = system_client()

    def __call__(self) -> Principal:
        if self.principal is None:
            raise Unauthorized("An access token is required", headers={"WWW-Authenticate": "Bearer"})
        return self.principal


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "base_url": BASE,
        "allow_anonymous": False,
        "data_dir": tmp_path / "data",
        "bulk_min_poll_seconds": 0,
        "bulk_retry_after_seconds": 1,
        "bulk_snapshot_settle_seconds": 0,
        "bulk_max_active_per_client": 50,
        "job_lease_seconds": 10,
        "max_body_bytes": 1_000_000,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def bulk_caller() -> Caller:
    return Caller()


@pytest.fixture
def bulk_settings(tmp_path: Path) -> Settings:
    return settings_for(tmp_path)


@pytest.fixture
def bulk_client(store: Store, bulk_settings: Settings, bulk_caller: Caller) -> Iterator[TestClient]:
    """A client whose principal is `bulk_caller.principal`."""
    from fhir_server.api.deps import get_principal

    app = create_app(bulk_settings, store=store)
    app.dependency_overrides[get_principal] = bulk_caller
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def settings(tmp_path: Path, smart_data_dir: Path) -> Settings:
    """Tokens required; the session's signing key; job files under the shared data folder."""
    return settings_for(tmp_path, data_dir=smart_data_dir)


@pytest.fixture
def http(store: Store, settings: Settings) -> Iterator[TestClient]:
    """An HTTP client on an app that enforces SMART tokens, with `SMART_APP` registered."""
    register(store, SMART_APP)
    with TestClient(
        create_app(settings, store=store), base_url=BASE, raise_server_exceptions=False
    ) as client:
        yield client


def start_worker(settings: Settings, database_url: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """A `fhir-server worker` process on the settings' Redis queue and data folder, its output
    appended to `log`; `env` adds or overrides FHIR_* variables."""
    assert settings.redis_url is not None, "a worker needs the Redis queue"
    values = {
        **os.environ,
        "FHIR_DATABASE_URL": database_url,
        "FHIR_REDIS_URL": settings.redis_url,
        "FHIR_JOB_QUEUE": settings.job_queue,
        "FHIR_DATA_DIR": str(settings.data_dir),
        "FHIR_BASE_URL": BASE,
        "FHIR_BULK_SNAPSHOT_SETTLE_SECONDS": "0",
        "FHIR_LOG_LEVEL": "warning",
        **env,
    }
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "fhir_server.cli", "worker"],
            env=values,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def kick_off(client: TestClient, path: str = "$export", **kwargs: Any) -> str:
    """Start an export (202 expected) and return its status URL."""
    headers = {"Prefer": "respond-async", "Accept": "application/fhir+json", **kwargs.pop("headers", {})}
    response = client.get(f"/{path}", headers=headers, **kwargs)
    assert response.status_code == 202, response.text
    return str(response.headers["content-location"])


def wait_done(client: TestClient, url: str, timeout: float = 60.0) -> Any:
    """Poll until the job is no longer in progress."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(url)
        if response.status_code != 202:
            return response
        assert time.monotonic() < deadline, "the job did not finish in time"
        time.sleep(0.02)


def export(client: TestClient, path: str = "$export", **kwargs: Any) -> dict[str, Any]:
    """Run an export to completion and return its manifest."""
    response = wait_done(client, kick_off(client, path, **kwargs))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def lines(
    client: TestClient, manifest: dict[str, Any], key: str = "output"
) -> dict[str, list[dict[str, Any]]]:
    """The resources of every file of a manifest section, by type."""
    import orjson

    out: dict[str, list[dict[str, Any]]] = {}
    for item in manifest[key]:
        response = client.get(item["url"])
        assert response.status_code == 200, response.text
        rows = [orjson.loads(line) for line in response.content.splitlines() if line]
        assert len(rows) == item["count"]
        out.setdefault(item["type"], []).extend(rows)
    return out


def put(store: Store, *resources: dict[str, Any]) -> list[str]:
    """Store resources directly (ids kept when given) and return their ids."""
    ids = []
    with store.write() as tx:
        for resource in resources:
            body = dict(resource)
            rid = body.pop("id", None)
            ids.append(tx.create(body, rid).res_id)
    return ids


def update(store: Store, resource_type: str, res_id: str, **changes: Any) -> None:
    """Write a new version of a stored resource with some elements changed."""
    with store.write() as tx:
        prev = tx.current(resource_type, res_id)
        assert prev is not None
        tx.update(prev, {**prev.resource(), **changes})


def remove(store: Store, resource_type: str, res_id: str) -> None:
    """Delete a stored resource."""
    with store.write() as tx:
        prev = tx.current(resource_type, res_id)
        assert prev is not None
        tx.delete(prev)
