"""A transaction entry may refer to a resource a LATER conditional create makes: references are checked when the transaction ends (https://hl7.org/fhir/R4/http.html#trules)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

FHIR = {"Content-Type": "application/fhir+json"}


def _bundle(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def _conditional(resource: dict[str, Any], full_url: str, criteria: str) -> dict[str, Any]:
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], "ifNoneExist": criteria},
    }


def test_reference_to_a_later_conditional_create_is_resolved(client: TestClient) -> None:
    patient = {"resourceType": "Patient", "identifier": [{"system": "urn:t", "value": "p"}]}
    note = {
        "resourceType": "DocumentReference",
        "identifier": [{"system": "urn:t", "value": "d"}],
        "status": "current",
        "subject": {"reference": "urn:uuid:1b0e5c1e-0000-4000-8000-000000000002"},
        "content": [{"attachment": {"contentType": "text/plain", "data": "aGk="}}],
    }
    bundle = _bundle(
        _conditional(note, "urn:uuid:1b0e5c1e-0000-4000-8000-000000000001", "identifier=urn:t|d"),
        _conditional(patient, "urn:uuid:1b0e5c1e-0000-4000-8000-000000000002", "identifier=urn:t|p"),
    )
    first = client.post("/", json=bundle, headers=FHIR)
    assert first.status_code == 200, first.text
    assert [e["response"]["status"] for e in first.json()["entry"]] == ["201 Created", "201 Created"]
    again = client.post("/", json=bundle, headers=FHIR)
    assert [e["response"]["status"] for e in again.json()["entry"]] == ["200 OK", "200 OK"]


def test_reference_to_nothing_is_still_refused_when_the_transaction_ends(client: TestClient) -> None:
    note = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": "Patient/nobody"},
        "content": [{"attachment": {"contentType": "text/plain", "data": "aGk="}}],
    }
    later = {"resourceType": "Patient", "identifier": [{"system": "urn:t", "value": "q"}]}
    bundle = _bundle(
        _conditional(note, "urn:uuid:1b0e5c1e-0000-4000-8000-000000000003", "identifier=urn:t|n"),
        _conditional(later, "urn:uuid:1b0e5c1e-0000-4000-8000-000000000004", "identifier=urn:t|q"),
    )
    response = client.post("/", json=bundle, headers=FHIR)
    assert response.status_code == 422, response.text
    assert "Patient/nobody" in response.text
    assert not client.get("/Patient", params={"identifier": "urn:t|q"}).json().get("entry")
