"""Consistency of the REST API (issue 12): an unknown operation is 404 for every method, and a Bundle
entry or a body without `resourceType` is reported as missing (https://hl7.org/fhir/R4/operations.html,
https://hl7.org/fhir/R4/http.html).

Before the fix GET answered 404, POST 405, PUT on `Patient/$nope` tried an update and DELETE answered
204 as if an id `$nope` had been deleted; the missing resourceType was reported as `'None'`
(`test_every_method_on_an_unknown_operation_is_404` and `test_a_missing_resource_type_is_reported_as_missing`
fail on the old code).
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from fhir_server.store import tables
from fhir_server.store.sql import Store
from tests import factories

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
UNKNOWN = ["/$nope", "/Patient/$nope", "/Patient/p1/$nope", "/Observation/$everything", "/Nonsense/$x"]


def _rows(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(tables.resource_version)).scalar_one())


@pytest.mark.parametrize("method", METHODS)
def test_every_method_on_an_unknown_operation_is_404(client: TestClient, store: Store, method: str) -> None:
    client.put("/Patient/p1", json={**factories.patient(), "id": "p1"})
    before = _rows(store)
    for path in UNKNOWN:
        body = {"resourceType": "Patient", "id": path.rsplit("/", 1)[1]} if method == "PUT" else {}
        response = client.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        issue = response.json()["issue"][0]
        assert issue["code"] == "not-found"
        assert "Unknown operation" in issue["diagnostics"]
    assert _rows(store) == before  # nothing was written or deleted


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/Patient/$everything"),
        ("DELETE", "/Observation/$lastn"),
        ("GET", "/$import"),
        ("PATCH", "/ValueSet/v/$expand"),
    ],
)
def test_a_known_operation_with_a_method_it_does_not_take_is_405(
    client: TestClient, method: str, path: str
) -> None:
    response = client.request(method, path, json={})
    assert response.status_code == 405
    assert response.json()["issue"][0]["code"] == "not-supported"


def test_a_missing_resource_type_is_reported_as_missing(client: TestClient) -> None:
    bundle = factories.transaction(
        {"resource": {"name": [{"family": "X"}]}, "request": {"method": "POST", "url": "Patient"}}
    )
    response = client.post("/", json=bundle)
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert issue["code"] == "required"
    assert "no resourceType" in issue["diagnostics"] and "None" not in issue["diagnostics"]
    assert issue["expression"] == ["Bundle.entry[0].resource.resourceType"]
    batch = {**bundle, "type": "batch"}
    outcome = client.post("/", json=batch).json()["entry"][0]["response"]["outcome"]["issue"][0]
    assert outcome["code"] == "required" and "None" not in outcome["diagnostics"]
    response = client.put("/Patient/p2", json={"id": "p2"})
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Patient.resourceType"]
    assert "no resourceType" in response.json()["issue"][0]["diagnostics"]
