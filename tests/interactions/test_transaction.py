"""transaction and batch Bundles (https://hl7.org/fhir/R4/http.html#transaction), on both databases."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from fhir_server.store import tables
from fhir_server.store.sql import Store
from tests import factories

FHIR = {"Content-Type": "application/fhir+json"}


def _counts(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in tables.metadata.sorted_tables
        }


def _post(client: TestClient, bundle: dict[str, Any]) -> Any:
    return client.post("/", json=bundle, headers=FHIR)


def test_transaction_resolves_urn_uuid_references_to_assigned_ids(client: TestClient) -> None:
    bundle = factories.transaction(
        factories.post_entry(factories.observation(subject={"reference": "urn:uuid:p1"}), "urn:uuid:o1"),
        factories.post_entry(factories.patient("Urn"), "urn:uuid:p1"),
    )
    r = _post(client, bundle)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "transaction-response"
    obs_entry, pat_entry = out["entry"]
    assert obs_entry["response"]["status"] == "201 Created"
    pat_loc = pat_entry["response"]["location"]
    pid = pat_loc.split("/")[1]
    obs = client.get("/" + obs_entry["response"]["location"].rsplit("/_history", 1)[0]).json()
    assert obs["subject"]["reference"] == f"Patient/{pid}"
    assert client.get(f"/Patient/{pid}").status_code == 200
    assert obs_entry["response"]["etag"] == 'W/"1"'
    assert "lastModified" in obs_entry["response"]


def test_transaction_failing_at_last_entry_leaves_database_unchanged(
    client: TestClient, store: Store
) -> None:
    client.post("/Patient", json=factories.patient("Before"), headers=FHIR)
    before = _counts(store)
    bundle = factories.transaction(
        factories.post_entry(factories.patient("One"), "urn:uuid:a"),
        factories.post_entry(factories.observation(subject={"reference": "urn:uuid:a"}), "urn:uuid:b"),
        {
            "request": {"method": "PUT", "url": "Patient/x"},
            "resource": {"resourceType": "Patient", "id": "x", "gender": 5},
        },
    )
    r = _post(client, bundle)
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"][0].startswith("Bundle.entry[2].resource")
    assert _counts(store) == before


def test_transaction_with_broken_reference_is_422_and_writes_nothing(
    client: TestClient, store: Store
) -> None:
    before = _counts(store)
    bundle = factories.transaction(
        factories.post_entry(factories.patient("One")),
        factories.post_entry(factories.observation("does-not-exist")),
    )
    r = _post(client, bundle)
    assert r.status_code == 422
    assert "Patient/does-not-exist" in r.json()["issue"][0]["diagnostics"]
    assert _counts(store) == before


def test_transaction_unresolved_urn_is_400(client: TestClient) -> None:
    bundle = factories.transaction(
        factories.post_entry(factories.observation(subject={"reference": "urn:uuid:nowhere"}))
    )
    assert _post(client, bundle).status_code == 400


def test_transaction_processes_deletes_before_posts_before_puts_before_gets(client: TestClient) -> None:
    rid = client.post("/Patient", json=factories.patient("Gone"), headers=FHIR).json()["id"]
    bundle = factories.transaction(
        {"request": {"method": "GET", "url": "Patient/fixed"}},
        {
            "request": {"method": "PUT", "url": "Patient/fixed"},
            "resource": {**factories.patient("Fixed"), "id": "fixed"},
        },
        factories.post_entry(factories.patient("New")),
        {"request": {"method": "DELETE", "url": f"Patient/{rid}"}},
    )
    r = _post(client, bundle)
    assert r.status_code == 200, r.text
    get, put, post, delete = r.json()["entry"]
    assert get["response"]["status"] == "200 OK"
    assert get["resource"]["name"][0]["family"] == "Fixed"  # the GET saw the PUT
    assert put["response"]["status"] == "201 Created"
    assert post["response"]["status"] == "201 Created"
    assert delete["response"]["status"] == "204 No Content"
    assert client.get(f"/Patient/{rid}").status_code == 410


def test_transaction_if_match_mismatch_fails_whole_transaction(client: TestClient, store: Store) -> None:
    rid = client.post("/Patient", json=factories.patient(), headers=FHIR).json()["id"]
    before = _counts(store)
    bundle = factories.transaction(
        factories.post_entry(factories.patient("Other")),
        {
            "request": {"method": "PUT", "url": f"Patient/{rid}", "ifMatch": 'W/"4"'},
            "resource": {**factories.patient("Changed"), "id": rid},
        },
    )
    assert _post(client, bundle).status_code == 412
    assert _counts(store) == before


def test_batch_entries_succeed_or_fail_independently(client: TestClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            factories.post_entry(factories.patient("Good")),
            {"request": {"method": "GET", "url": "Patient/missing"}},
            {
                "request": {"method": "POST", "url": "Patient"},
                "resource": {"resourceType": "Patient", "gender": []},
            },
        ],
    }
    r = _post(client, bundle)
    assert r.status_code == 200
    good, missing, bad = r.json()["entry"]
    assert good["response"]["status"] == "201 Created"
    assert missing["response"]["status"] == "404"
    assert missing["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert bad["response"]["status"] == "400"
    assert r.json()["type"] == "batch-response"


def test_malformed_bundle_is_400(client: TestClient) -> None:
    assert _post(client, {"resourceType": "Bundle", "type": "collection"}).status_code == 400
    assert _post(client, {"resourceType": "Bundle", "type": "transaction", "entry": {}}).status_code == 400
    r = _post(client, factories.transaction({"request": {"method": "FLY", "url": "Patient"}}))
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[0].request.method"]
    r = _post(client, factories.transaction({"resource": factories.patient()}))
    assert r.status_code == 400
    assert _post(client, factories.patient()).status_code == 400
