"""No log line carries resource content or bound parameters, even when the database fails a write.

https://hl7.org/fhir/R4/security.html: logs are not a place for patient data.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from fhir_server.store import tables
from fhir_server.store.sql import Stored, Tx
from tests import factories

FAMILY = "Przybyszewski-Sentinel-93"
IDENTIFIER = "MRN-SENTINEL-55120"
NOTE = "Sentinel note: allergic to quokka dander"
SENTINELS = (FAMILY, IDENTIFIER, NOTE)
FHIR = {"Content-Type": "application/fhir+json"}


def _patient(**extra: Any) -> dict[str, Any]:
    return factories.patient(
        family=FAMILY,
        identifier=[{"system": "urn:oid:1.2.3", "value": IDENTIFIER}],
        text={"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{NOTE}</div>'},
        **extra,
    )


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record at DEBUG, SQLAlchemy's statement, pool and row logging included."""
    caplog.set_level(logging.DEBUG)
    for name in ("sqlalchemy.engine", "sqlalchemy.pool"):
        caplog.set_level(logging.DEBUG, logger=name)
    yield caplog


@pytest.fixture
def failing_creates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Creates that fail inside the database: a row with a NULL resource type, the patient's name as id."""
    create = Tx.create

    def create_then_fail(self: Tx, resource: dict[str, Any], *args: Any, **kwargs: Any) -> Stored:
        stored = create(self, resource, *args, **kwargs)
        self.conn.execute(
            tables.resource.insert().values(
                res_type=None,
                res_id=resource["name"][0]["family"],
                version=1,
                last_updated=0,
                deleted=False,
                content=stored.content,
            )
        )
        return stored

    monkeypatch.setattr(Tx, "create", create_then_fail)


def _assert_no_sentinel(caplog: pytest.LogCaptureFixture) -> None:
    # The test's HTTP client (httpx) logs the URLs it requests: that is not the server's log.
    records = [r for r in caplog.records if not r.name.startswith("httpx")]
    assert records, "nothing was logged: the capture is not working"
    handler = logging.Handler()
    logged = "\n".join(f"{r.getMessage()}\n{handler.format(r)}\n{r.exc_text or ''}" for r in records)
    for sentinel in SENTINELS:
        assert sentinel not in logged
        assert sentinel.encode().hex() not in logged  # bytea values in PostgreSQL's messages


def test_engines_hide_bound_parameters(engine: Engine) -> None:
    assert engine.hide_parameters is True


def test_database_error_on_create_logs_no_patient_data(
    client: TestClient, all_logs: pytest.LogCaptureFixture, failing_creates: None
) -> None:
    r = client.post("/Patient", json=_patient(), headers=FHIR)
    assert r.status_code == 500
    assert not any(sentinel in r.text for sentinel in SENTINELS)
    assert "IntegrityError" in all_logs.text  # the failure itself is logged, without its values
    _assert_no_sentinel(all_logs)


def test_database_error_in_a_transaction_logs_no_patient_data(
    client: TestClient, all_logs: pytest.LogCaptureFixture, failing_creates: None
) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": _patient(), "request": {"method": "POST", "url": "Patient"}}],
    }
    r = client.post("/", json=bundle, headers=FHIR)
    assert r.status_code == 500
    assert "IntegrityError" in all_logs.text
    _assert_no_sentinel(all_logs)


def test_rejected_writes_and_searches_log_no_patient_data(
    client: TestClient, all_logs: pytest.LogCaptureFixture
) -> None:
    assert client.post("/Patient", json=_patient(birthDate="not a date"), headers=FHIR).status_code == 400
    assert client.post("/Patient", json=_patient(), headers=FHIR).status_code == 201
    assert client.put("/Patient/p1", json={**_patient(), "id": "other"}, headers=FHIR).status_code == 400
    assert client.get("/Patient", params={"family": FAMILY}).json()["total"] == 1
    assert client.get("/Patient", params={"identifier": IDENTIFIER}).json()["total"] == 1
    assert client.get("/Patient", params={"family:nonsense": FAMILY}).status_code == 400
    _assert_no_sentinel(all_logs)
