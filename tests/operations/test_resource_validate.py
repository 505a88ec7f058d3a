"""$validate on types and instances (https://hl7.org/fhir/R4/resource-operation-validate.html), both databases.

New for issue 11: before it, `$validate` answered 404/405 (these tests fail on 77b7c15).
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.store.sql import Store
from tests import factories
from tests.api.test_scope_enforcement import mint

FHIR = {"Content-Type": "application/fhir+json"}
HEARTRATE = "http://hl7.org/fhir/StructureDefinition/heartrate"


def errors(outcome: dict[str, Any]) -> list[tuple[str, list[str]]]:
    assert outcome["resourceType"] == "OperationOutcome"
    return [
        (i["code"], i.get("expression", [])) for i in outcome["issue"] if i["severity"] in ("error", "fatal")
    ]


def params(resource: dict[str, Any], **more: str) -> dict[str, Any]:
    extra = [{"name": k, "valueString" if k == "mode" else "valueUri": v} for k, v in more.items()]
    if "mode" in more:
        extra = [{"name": "mode", "valueCode": more["mode"]}] + [e for e in extra if e["name"] != "mode"]
    return {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": resource}, *extra]}


def test_type_level_post_of_the_resource_or_parameters(client: TestClient) -> None:
    ok = client.post("/Patient/$validate", json=factories.patient(), headers=FHIR)
    assert ok.status_code == 200 and errors(ok.json()) == []
    assert ok.json()["issue"][0]["severity"] == "information"
    bad = client.post("/Patient/$validate", json=factories.patient(gender="x"), headers=FHIR)
    assert bad.status_code == 200  # an invalid resource is still a 200 answer
    assert errors(bad.json()) == [("code-invalid", ["Patient.gender"])]
    wrapped = client.post("/Patient/$validate", json=params(factories.patient(gender="x")), headers=FHIR)
    assert errors(wrapped.json()) == [("code-invalid", ["Patient.gender"])]


def test_with_a_profile_parameter_and_a_declared_profile(client: TestClient) -> None:
    obs = factories.observation("p1")
    obs["valueQuantity"]["code"] = "bpm"
    plain = client.post("/Observation/$validate", json=params(obs), headers=FHIR)
    assert errors(plain.json()) == []
    profiled = client.post("/Observation/$validate", json=params(obs, profile=HEARTRATE), headers=FHIR)
    assert errors(profiled.json()) == [("value", ["Observation.valueQuantity.code"])]
    by_get = client.post(f"/Observation/$validate?profile={HEARTRATE}", json=obs, headers=FHIR)
    assert errors(by_get.json()) == [("value", ["Observation.valueQuantity.code"])]
    declared = client.post(
        "/Observation/$validate", json={**obs, "meta": {"profile": [HEARTRATE]}}, headers=FHIR
    )
    assert errors(declared.json()) == [("value", ["Observation.valueQuantity.code"])]
    unknown = client.post("/Observation/$validate?profile=http://example.org/nope", json=obs, headers=FHIR)
    assert unknown.status_code == 400


def test_instance_level_get_validates_the_stored_resource(client: TestClient, store: Store) -> None:
    with store.write() as tx:
        tx.create(factories.patient(), "A")
        tx.create(factories.observation("A"), "o1")
    r = client.get("/Patient/A/$validate")
    assert r.status_code == 200 and errors(r.json()) == []
    r = client.get(f"/Observation/o1/$validate?profile={HEARTRATE}")
    assert errors(r.json()) == []
    assert client.get("/Patient/nobody/$validate").status_code == 404


def test_instance_level_modes(client: TestClient, store: Store) -> None:
    with store.write() as tx:
        tx.create(factories.patient(), "A")
    wrong_id = client.post(
        "/Patient/A/$validate", json=params({**factories.patient(), "id": "B"}, mode="update"), headers=FHIR
    )
    assert errors(wrong_id.json()) == [("invalid", ["Patient.id"])]
    same = client.post(
        "/Patient/A/$validate", json=params({**factories.patient(), "id": "A"}, mode="update"), headers=FHIR
    )
    assert errors(same.json()) == []
    assert errors(client.get("/Patient/A/$validate?mode=delete").json()) == []
    assert client.get("/Patient/A/$validate?mode=sideways").status_code == 400
    assert client.get("/Patient/$validate").status_code == 400  # nothing to validate


def test_validate_is_in_the_capability_statement(client: TestClient) -> None:
    rest = client.get("/metadata").json()["rest"][0]
    for entry in rest["resource"]:
        if entry["type"] in ("Patient", "Observation"):
            assert {
                "name": "validate",
                "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
            } in entry["operation"]


# ---------------- isolation: two patients, two users of one client, an operator ----------------
@pytest.fixture
def two(store: Store) -> dict[str, str]:
    with store.write() as tx:
        tx.create(factories.patient("Alpha", "Ann"), "A")
        tx.create(factories.patient("Beta", "Bob"), "B")
        return {w: tx.create(factories.observation(w)).res_id for w in ("A", "B")}


def test_a_patient_token_validates_its_own_record_only(smart_client: TestClient, two: dict[str, str]) -> None:
    a = mint(smart_client, "patient/*.cruds", patient="A")
    assert smart_client.get("/Patient/A/$validate", headers=a).status_code == 200
    assert smart_client.get(f"/Observation/{two['A']}/$validate", headers=a).status_code == 200
    assert smart_client.get("/Patient/B/$validate", headers=a).status_code == 404
    assert smart_client.get(f"/Observation/{two['B']}/$validate", headers=a).status_code == 404


def test_two_users_of_the_same_client_see_only_their_own(
    smart_client: TestClient, two: dict[str, str]
) -> None:
    for me, other in (("A", "B"), ("B", "A")):
        h = mint(smart_client, "user/*.cruds", kind="patient", fhir_user=f"Patient/{me}")
        assert smart_client.get(f"/Patient/{me}/$validate", headers=h).status_code == 200
        assert smart_client.get(f"/Patient/{other}/$validate", headers=h).status_code == 404
        assert smart_client.get(f"/Observation/{two[other]}/$validate", headers=h).status_code == 404


def test_an_operator_validates_everyone_and_scopes_are_needed(
    smart_client: TestClient, two: dict[str, str]
) -> None:
    op = mint(smart_client, "system/*.cruds", kind="system")
    for who in ("A", "B"):
        assert smart_client.get(f"/Patient/{who}/$validate", headers=op).status_code == 200
    read_only = mint(smart_client, "patient/Patient.rs", patient="A")
    r = smart_client.post("/Patient/$validate", json=factories.patient(), headers={**read_only, **FHIR})
    assert r.status_code == 403
    assert smart_client.post("/Patient/$validate", json=factories.patient(), headers=FHIR).status_code == 401
