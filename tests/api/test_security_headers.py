"""nosniff on every response, no-store on those that may carry PHI; CapabilityStatement stays cacheable."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from fhir_server.interactions import read
from tests import factories

FHIR = {"Content-Type": "application/fhir+json"}


def test_resource_read_search_and_history_are_no_store_and_nosniff(client: TestClient) -> None:
    created = client.post("/Patient", json=factories.patient(), headers=FHIR)
    rid = created.json()["id"]
    for r in (
        created,
        client.get(f"/Patient/{rid}"),
        client.get("/Patient", params={"_id": rid}),
        client.get(f"/Patient/{rid}/_history"),
    ):
        assert r.status_code in (200, 201)
        assert r.headers["Cache-Control"] == "no-store"
        assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_error_outcomes_are_no_store_and_nosniff(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unexpected")

    not_found = client.get("/Patient/nope")
    monkeypatch.setattr(read, "read", boom)
    failed = client.get("/Patient/x")
    for r, status in ((not_found, 404), (failed, 500)):
        assert r.status_code == status
        assert r.headers["Cache-Control"] == "no-store"
        assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_capability_statement_and_discovery_stay_cacheable(client: TestClient) -> None:
    for path in ("/metadata", "/.well-known/smart-configuration"):
        r = client.get(path)
        assert r.status_code == 200
        assert "no-store" not in r.headers.get("Cache-Control", "")
        assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_a_response_keeps_its_own_cache_control(client: TestClient) -> None:
    r = client.get("/.well-known/jwks.json")
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "public, max-age=3600"
