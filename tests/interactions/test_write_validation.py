"""Every write is validated against HL7's StructureDefinitions (fhir_server/validation.py): REST create,
update, patch and each transaction/batch entry; a rejected write stores nothing. Both databases.

New for issue 11: before it, the bad codes and the invariant below were stored (201) and the
transaction committed; these tests fail on the old code (77b7c15).
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from fhir_server.store import tables
from fhir_server.store.sql import Store
from tests import factories

FHIR = {"Content-Type": "application/fhir+json"}
HEARTRATE = "http://hl7.org/fhir/StructureDefinition/heartrate"


def stored(store: Store) -> int:
    with store.read() as tx:
        return int(tx.conn.execute(select(func.count()).select_from(tables.resource)).scalar_one())


def bad_heart_rate() -> dict[str, Any]:
    obs = factories.observation("p1", meta={"profile": [HEARTRATE]})
    obs["valueQuantity"]["code"] = "bpm"
    return obs


def bad_vs_2() -> dict[str, Any]:
    obs = factories.observation(
        "p1", meta={"profile": ["http://hl7.org/fhir/StructureDefinition/vitalsigns"]}
    )
    del obs["valueQuantity"]  # no value, no dataAbsentReason, no component or hasMember
    return obs


def bad_obs_7() -> dict[str, Any]:
    return factories.observation(
        "p1", component=[{"code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}}]
    )


CASES = [
    ("Observation", factories.observation("p1", status="bogus"), "code-invalid", "Observation.status"),
    ("Patient", factories.patient(gender="x"), "code-invalid", "Patient.gender"),
    (
        "Observation",
        {k: v for k, v in factories.observation("p1").items() if k != "code"},
        "required",
        "Observation.code",
    ),
    ("Patient", factories.patient(gender=["female"]), "structure", "Patient.gender"),
    ("Observation", bad_obs_7(), "invariant", "Observation"),
    ("Observation", bad_vs_2(), "invariant", "Observation"),
    (
        "Observation",
        factories.observation(subject={"reference": "Medication/m"}),
        "structure",
        "Observation.subject.reference",
    ),
    ("Observation", bad_heart_rate(), "value", "Observation.valueQuantity.code"),
    ("Patient", factories.patient(nickname="A"), "structure", "Patient.nickname"),
    ("Patient", factories.patient(extension=[{"valueString": "x"}]), "required", "Patient.extension[0].url"),
]


@pytest.mark.parametrize(("rtype", "body", "code", "expression"), CASES)
def test_create_and_update_refuse_invalid_resources_and_store_nothing(
    client: TestClient, store: Store, rtype: str, body: dict[str, Any], code: str, expression: str
) -> None:
    r = client.post(f"/{rtype}", json=body, headers=FHIR)
    assert r.status_code == 400, r.text
    issues = r.json()["issue"]
    assert (code, [expression]) in [(i["code"], i.get("expression")) for i in issues]
    assert all(i["severity"] == "error" for i in issues)
    r = client.put(f"/{rtype}/x1", json={**body, "id": "x1"}, headers=FHIR)
    assert r.status_code == 400, r.text
    assert stored(store) == 0


def test_all_errors_come_back_at_once(client: TestClient) -> None:
    body = factories.patient(gender="x", nickname="A", birthDate="1970-02-30x")
    r = client.post("/Patient", json=body, headers=FHIR)
    assert r.status_code == 400
    assert {i["expression"][0] for i in r.json()["issue"]} == {
        "Patient.gender",
        "Patient.nickname",
        "Patient.birthDate",
    }


def test_a_transaction_with_one_invalid_entry_leaves_the_database_unchanged(
    client: TestClient, store: Store
) -> None:
    before = stored(store)
    bundle = factories.transaction(
        factories.post_entry(factories.patient(), "urn:uuid:6b6f6a1e-1c4b-4e2c-9a55-0d2b8a0c0001"),
        factories.post_entry(
            factories.observation(subject={"reference": "urn:uuid:6b6f6a1e-1c4b-4e2c-9a55-0d2b8a0c0001"})
        ),
        factories.post_entry(factories.observation("p1", status="bogus")),
    )
    r = client.post("/", json=bundle, headers=FHIR)
    assert r.status_code == 400, r.text
    assert ["Bundle.entry[2].resource.status"] in [i.get("expression") for i in r.json()["issue"]]
    assert stored(store) == before


def test_a_batch_rejects_only_the_invalid_entry(client: TestClient, store: Store) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            factories.post_entry(factories.patient()),
            factories.post_entry(factories.patient(gender="x")),
        ],
    }
    r = client.post("/", json=bundle, headers=FHIR)
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses[0].startswith("201") and statuses[1].startswith("400")
    assert stored(store) == 1


def test_a_patch_that_breaks_a_required_binding_is_refused(client: TestClient, store: Store) -> None:
    pid = client.post("/Patient", json=factories.patient(), headers=FHIR).json()["id"]
    r = client.patch(
        f"/Patient/{pid}",
        json=[{"op": "replace", "path": "/gender", "value": "x"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 422, r.text  # a patch whose result is invalid (http.html#patch)
    assert r.json()["issue"][0]["expression"] == ["Patient.gender"]
    assert client.get(f"/Patient/{pid}").json()["gender"] == "female"


def test_valid_resources_and_profiles_are_stored(client: TestClient) -> None:
    r = client.post("/Patient", json=factories.patient(), headers=FHIR)
    assert r.status_code == 201
    obs = factories.observation(r.json()["id"], meta={"profile": [HEARTRATE]})
    assert client.post("/Observation", json=obs, headers=FHIR).status_code == 201
