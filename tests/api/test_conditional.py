"""Conditional create, update and delete over HTTP (https://hl7.org/fhir/R4/http.html#ccreate, #cond-update, #cdelete)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests import factories


def _mrn(value: str, family: str = "Smith") -> dict[str, Any]:
    return {**factories.patient(family), "identifier": [{"system": "urn:test:mrn", "value": value}]}


def test_if_none_exist_returns_the_match_instead_of_creating(client: TestClient) -> None:
    first = client.post("/Patient", json=_mrn("1"))
    again = client.post("/Patient", json=_mrn("1"), headers={"If-None-Exist": "identifier=urn:test:mrn|1"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert client.get("/Patient?identifier=urn:test:mrn|1").json()["total"] == 1


def test_if_none_exist_with_several_matches_is_412(client: TestClient) -> None:
    client.post("/Patient", json=_mrn("dup"))
    client.post("/Patient", json=_mrn("dup"))
    r = client.post("/Patient", json=_mrn("dup"), headers={"If-None-Exist": "identifier=urn:test:mrn|dup"})
    assert r.status_code == 412


def test_if_none_exist_with_bad_criteria_is_400(client: TestClient) -> None:
    r = client.post("/Patient", json=_mrn("x"), headers={"If-None-Exist": "shoe-size=42"})
    assert r.status_code == 400


def test_conditional_update_creates_then_updates_the_single_match(client: TestClient) -> None:
    created = client.put("/Patient?identifier=urn:test:mrn|7", json=_mrn("7", "Before"))
    assert created.status_code == 201
    updated = client.put("/Patient?identifier=urn:test:mrn|7", json=_mrn("7", "After"))
    assert updated.status_code == 200
    assert updated.json()["id"] == created.json()["id"]
    assert updated.json()["meta"]["versionId"] == "2"
    assert updated.json()["name"][0]["family"] == "After"


def test_conditional_update_with_several_matches_is_412(client: TestClient) -> None:
    client.post("/Patient", json=_mrn("two"))
    client.post("/Patient", json=_mrn("two"))
    assert client.put("/Patient?identifier=urn:test:mrn|two", json=_mrn("two")).status_code == 412


def test_conditional_delete_removes_the_single_match(client: TestClient) -> None:
    rid = client.post("/Patient", json=_mrn("del")).json()["id"]
    assert client.delete("/Patient?identifier=urn:test:mrn|del").status_code == 204
    assert client.get(f"/Patient/{rid}").status_code == 410
    assert client.delete("/Patient?identifier=urn:test:mrn|del").status_code == 204  # nothing left: no-op


def test_conditional_delete_without_criteria_is_400(client: TestClient) -> None:
    assert client.delete("/Patient").status_code == 400


def test_transaction_conditional_reference_resolves_to_the_single_match(client: TestClient) -> None:
    pid = client.post("/Patient", json=_mrn("ref")).json()["id"]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "request": {"method": "POST", "url": "Observation"},
                "resource": factories.observation(
                    subject={"reference": "Patient?identifier=urn:test:mrn|ref"}
                ),
            }
        ],
    }
    r = client.post("/", json=bundle)
    assert r.status_code == 200, r.text
    loc = r.json()["entry"][0]["response"]["location"].split("/_history")[0]
    assert client.get(f"/{loc}").json()["subject"]["reference"] == f"Patient/{pid}"
    bundle["entry"][0]["resource"]["subject"]["reference"] = "Patient?identifier=urn:test:mrn|nobody"  # type: ignore[index]
    assert client.post("/", json=bundle).status_code == 412


def test_transaction_if_none_exist_entry_maps_its_full_url_to_the_existing_resource(
    client: TestClient,
) -> None:
    pid = client.post("/Patient", json=_mrn("tx")).json()["id"]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:pat",
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:test:mrn|tx"},
                "resource": _mrn("tx"),
            },
            {
                "request": {"method": "POST", "url": "Observation"},
                "resource": factories.observation(subject={"reference": "urn:uuid:pat"}),
            },
        ],
    }
    r = client.post("/", json=bundle)
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["response"]["status"] == "200 OK"
    obs_loc = r.json()["entry"][1]["response"]["location"].split("/_history")[0]
    assert client.get(f"/{obs_loc}").json()["subject"]["reference"] == f"Patient/{pid}"
