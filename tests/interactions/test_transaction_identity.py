"""A resource can appear in a transaction only once (https://hl7.org/fhir/R4/http.html#trules), and the
entries of a batch must not depend on each other (#brules), on both databases."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from fhir_server.store import tables
from fhir_server.store.sql import Store
from tests import factories

FHIR = {"Content-Type": "application/fhir+json"}
MRN = "urn:test:mrn"


def _counts(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in tables.metadata.sorted_tables
        }


def _put(url: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {"request": {"method": "PUT", "url": url}, "resource": resource}


def _patient(client: TestClient, rid: str, mrn: str | None = None) -> None:
    body = {**factories.patient(), "id": rid}
    if mrn:
        body["identifier"] = [{"system": MRN, "value": mrn}]
    assert client.put(f"/Patient/{rid}", json=body, headers=FHIR).status_code == 201


def _refused(client: TestClient, store: Store, *entries: dict[str, Any]) -> dict[str, Any]:
    """Post a transaction that must be refused 400 without writing anything; its OperationOutcome."""
    before = _counts(store)
    r = client.post("/", json=factories.transaction(*entries), headers=FHIR)
    assert r.status_code == 400, r.text
    assert _counts(store) == before
    outcome: dict[str, Any] = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    return outcome


def test_transaction_putting_the_same_patient_twice_is_400_naming_the_second_entry(
    client: TestClient, store: Store
) -> None:
    outcome = _refused(
        client,
        store,
        factories.post_entry(factories.patient("Kept?")),
        _put("Patient/twice", {**factories.patient("One"), "id": "twice"}),
        _put("Patient/twice", {**factories.patient("Two"), "id": "twice"}),
    )
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[2].request.url"]
    assert "Bundle.entry[1]" in outcome["issue"][0]["diagnostics"]
    assert client.get("/Patient/twice").status_code == 404


def test_transaction_updating_and_deleting_the_same_patient_is_400(client: TestClient, store: Store) -> None:
    _patient(client, "p")
    outcome = _refused(
        client,
        store,
        _put("Patient/p", {**factories.patient("Changed"), "id": "p"}),
        {"request": {"method": "DELETE", "url": "Patient/p"}},
    )
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[1].request.url"]
    assert client.get("/Patient/p").json()["meta"]["versionId"] == "1"


def test_transaction_patching_a_patient_it_also_updates_is_400(client: TestClient, store: Store) -> None:
    _patient(client, "p")
    patch = [{"op": "replace", "path": "/gender", "value": "male"}]
    binary = {
        "resourceType": "Binary",
        "contentType": "application/json-patch+json",
        "data": base64.b64encode(orjson.dumps(patch)).decode(),
    }
    outcome = _refused(
        client,
        store,
        {"request": {"method": "PATCH", "url": "Patient/p"}, "resource": binary},
        _put("Patient/p", {**factories.patient("Changed"), "id": "p"}),
    )
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[1].request.url"]


def test_transaction_with_one_conditional_update_url_twice_is_400(client: TestClient, store: Store) -> None:
    url = f"Patient?identifier={MRN}|same"
    _refused(client, store, _put(url, factories.patient("One")), _put(url, factories.patient("Two")))


def test_transaction_whose_conditional_update_resolves_to_a_patient_it_also_updates_is_400(
    client: TestClient, store: Store
) -> None:
    _patient(client, "p", mrn="m-1")
    outcome = _refused(
        client,
        store,
        factories.post_entry(factories.patient("Other")),
        _put(f"Patient?identifier={MRN}|m-1", factories.patient("ByCriteria")),
        _put("Patient/p", {**factories.patient("ById"), "id": "p"}),
    )
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[1].request.url"]
    assert "Patient/p" in outcome["issue"][0]["diagnostics"]


def test_transaction_whose_conditional_delete_resolves_to_a_patient_it_also_updates_is_400(
    client: TestClient, store: Store
) -> None:
    _patient(client, "p", mrn="m-2")
    outcome = _refused(
        client,
        store,
        _put("Patient/p", {**factories.patient("ById"), "id": "p"}),
        {"request": {"method": "DELETE", "url": f"Patient?identifier={MRN}|m-2"}},
    )
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[1].request.url"]
    assert client.get("/Patient/p").status_code == 200


def test_transaction_posting_one_full_url_twice_is_400(client: TestClient, store: Store) -> None:
    outcome = _refused(
        client,
        store,
        factories.post_entry(factories.patient("One"), "urn:uuid:same"),
        factories.post_entry(factories.patient("Two"), "urn:uuid:same"),
    )
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[1].fullUrl"]


def test_transaction_changing_different_patients_still_commits(client: TestClient) -> None:
    _patient(client, "p", mrn="m-3")
    r = client.post(
        "/",
        json=factories.transaction(
            _put("Patient/q", {**factories.patient("Q"), "id": "q"}),
            _put(f"Patient?identifier={MRN}|m-3", factories.patient("ByCriteria")),
            {"request": {"method": "GET", "url": "Patient/p"}},
        ),
        headers=FHIR,
    )
    assert r.status_code == 200, r.text
    assert [e["response"]["status"] for e in r.json()["entry"]] == ["201 Created", "200 OK", "200 OK"]


def test_batch_entries_changing_the_same_patient_are_each_400_and_the_others_proceed(
    client: TestClient,
) -> None:
    _patient(client, "p")
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            _put("Patient/p", {**factories.patient("One"), "id": "p"}),
            factories.post_entry(factories.patient("Independent")),
            {"request": {"method": "DELETE", "url": "Patient/p"}},
            {"request": {"method": "GET", "url": "Patient/p"}},
        ],
    }
    r = client.post("/", json=bundle, headers=FHIR)
    assert r.status_code == 200, r.text
    put, post, delete, get = r.json()["entry"]
    assert put["response"]["status"] == delete["response"]["status"] == "400"
    assert put["response"]["outcome"]["issue"][0]["expression"] == ["Bundle.entry[0].request.url"]
    assert delete["response"]["outcome"]["issue"][0]["expression"] == ["Bundle.entry[2].request.url"]
    assert post["response"]["status"] == "201 Created"
    assert get["response"]["status"] == "200 OK"
    assert client.get("/Patient/p").json()["meta"]["versionId"] == "1"
