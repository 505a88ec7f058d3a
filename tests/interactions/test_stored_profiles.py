"""StructureDefinitions stored on the server used as profiles (issue 11), both databases.

A `meta.profile` claim naming a stored StructureDefinition (url or url|version) is validated
against it; updates and deletes take effect at the next write (the lookup is by stored version,
not a process-local registry); a stored definition never redefines a package's url.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.store.sql import Store
from profiles import definitions
from tests import factories
from tests.api.test_scope_enforcement import mint

FHIR = {"Content-Type": "application/fhir+json"}
HEARTRATE = "http://hl7.org/fhir/StructureDefinition/heartrate"
MINE = "http://example.org/fhir/StructureDefinition/my-heartrate"
CODE_ID = "Observation.value[x]:valueQuantity.code"


@pytest.fixture(autouse=True)
def patients(store: Store) -> None:
    with store.write() as tx:
        tx.create(factories.patient("Alpha", "Ann"), "p1")
        tx.create(factories.patient("Beta", "Bob"), "p2")


def my_profile(url: str = MINE, fixed_code: str = "/min", version: str | None = None, **extra: Any) -> dict:
    """HL7's heartrate profile under a url of our own, its unit code fixed to `fixed_code`."""
    sd = copy.deepcopy(dict(definitions.find(HEARTRATE) or {}))
    sd.pop("text", None)
    sd.update(id=url.rsplit("/", 1)[1], url=url, name="MyHeartRate", **extra)
    if version is not None:
        sd["version"] = version
    for e in sd["snapshot"]["element"]:
        if e["id"] == CODE_ID:
            e["fixedCode"] = fixed_code
    for e in sd["differential"]["element"]:
        if e["id"] == "Observation.valueQuantity.code":
            e["fixedCode"] = fixed_code
    return sd


def heart_rate(code: str, *claims: str) -> dict[str, Any]:
    obs = factories.observation("p1")
    obs["valueQuantity"]["code"] = code
    obs["meta"] = {"profile": list(claims or [MINE])}
    return obs


def errors(r: Any) -> list[tuple[str, list[str]]]:
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    return [(i["code"], i.get("expression", [])) for i in body["issue"] if i["severity"] == "error"]


def count(client: TestClient, rtype: str) -> int:
    return int(client.get(f"/{rtype}?_summary=count").json()["total"])


def put_sd(client: TestClient, sd: dict[str, Any]) -> Any:
    return client.put(f"/StructureDefinition/{sd['id']}", json=sd, headers=FHIR)


def test_a_claim_of_a_stored_profile_is_validated_and_an_update_changes_the_outcome(
    client: TestClient,
) -> None:
    # before the definition is stored, the claim is unknown: the write goes through (FHIR_UNKNOWN_PROFILES=warn)
    assert client.post("/Observation", json=heart_rate("bpm"), headers=FHIR).status_code == 201
    assert put_sd(client, my_profile()).status_code == 201
    bad = client.post("/Observation", json=heart_rate("bpm"), headers=FHIR)
    assert bad.status_code == 400
    assert errors(bad) == [("value", ["Observation.valueQuantity.code"])]
    assert client.post("/Observation", json=heart_rate("/min"), headers=FHIR).status_code == 201
    # the definition changes: the next write follows it
    assert put_sd(client, my_profile(fixed_code="bpm")).status_code == 200
    assert client.post("/Observation", json=heart_rate("bpm"), headers=FHIR).status_code == 201
    refused = client.post("/Observation", json=heart_rate("/min"), headers=FHIR)
    assert errors(refused) == [("value", ["Observation.valueQuantity.code"])]
    # deleted: the claim is unknown again
    assert client.delete("/StructureDefinition/my-heartrate").status_code in (200, 204)
    assert client.post("/Observation", json=heart_rate("/min"), headers=FHIR).status_code == 201
    assert count(client, "Observation") == 4


def test_an_update_made_outside_this_app_is_seen(client: TestClient, store: Store) -> None:
    """Another server process writes through the database: no cache of this process hides it."""
    assert put_sd(client, my_profile()).status_code == 201
    assert client.post("/Observation", json=heart_rate("bpm"), headers=FHIR).status_code == 400
    with store.write() as tx:
        prev = tx.current("StructureDefinition", "my-heartrate")
        assert prev is not None
        tx.update(prev, my_profile(fixed_code="bpm"))
    assert client.post("/Observation", json=heart_rate("bpm"), headers=FHIR).status_code == 201
    with store.write() as tx:
        prev = tx.current("StructureDefinition", "my-heartrate")
        assert prev is not None
        tx.delete(prev)
    assert client.post("/Observation", json=heart_rate("anything"), headers=FHIR).status_code == 201


def test_a_versioned_claim_uses_that_version(client: TestClient) -> None:
    one = my_profile(version="1", fixed_code="/min")
    two = my_profile(version="2", fixed_code="bpm")
    two["id"] = "my-heartrate-2"
    assert put_sd(client, one).status_code == 201
    assert put_sd(client, two).status_code == 201
    assert client.post("/Observation", json=heart_rate("/min", f"{MINE}|1"), headers=FHIR).status_code == 201
    assert client.post("/Observation", json=heart_rate("bpm", f"{MINE}|1"), headers=FHIR).status_code == 400
    assert client.post("/Observation", json=heart_rate("bpm", f"{MINE}|2"), headers=FHIR).status_code == 201
    assert client.post("/Observation", json=heart_rate("/min", f"{MINE}|2"), headers=FHIR).status_code == 400
    # no version: the most recently updated one (version 2)
    assert client.post("/Observation", json=heart_rate("/min"), headers=FHIR).status_code == 400
    # a version nobody stored: unknown
    assert client.post("/Observation", json=heart_rate("x", f"{MINE}|3"), headers=FHIR).status_code == 201


def test_a_differential_only_profile_gets_a_snapshot(client: TestClient) -> None:
    sd = my_profile()
    del sd["snapshot"]
    assert put_sd(client, sd).status_code == 201
    bad = client.post("/Observation", json=heart_rate("bpm"), headers=FHIR)
    assert errors(bad) == [("value", ["Observation.valueQuantity.code"])]
    no_code = heart_rate("/min")
    no_code["code"]["coding"][0]["code"] = "1234-5"  # the HeartRateCode slice (8867-4) is required
    assert client.post("/Observation", json=no_code, headers=FHIR).status_code == 400
    assert client.post("/Observation", json=heart_rate("/min"), headers=FHIR).status_code == 201


def test_a_differential_the_server_cannot_expand_is_refused_when_claimed(client: TestClient) -> None:
    sd = my_profile()
    del sd["snapshot"]
    sd["differential"]["element"].append({"id": "Observation.nope", "path": "Observation.nope", "min": 1})
    assert put_sd(client, sd).status_code == 201  # a valid resource: stored
    r = client.post("/Observation", json=heart_rate("/min"), headers=FHIR)
    assert r.status_code == 400
    (issue,) = r.json()["issue"]
    assert issue["code"] == "processing" and issue["expression"] == ["Observation.meta.profile"]
    assert "no snapshot" in issue["diagnostics"] and "Observation.nope" in issue["diagnostics"]
    assert count(client, "Observation") == 0


def test_a_package_url_is_never_redefined(client: TestClient) -> None:
    shadow = my_profile(url=HEARTRATE, fixed_code="bpm")
    r = put_sd(client, shadow)
    assert r.status_code == 422
    assert r.json()["issue"][0]["expression"] == ["StructureDefinition.url"]
    assert client.post("/StructureDefinition", json=shadow, headers=FHIR).status_code == 422
    assert count(client, "StructureDefinition") == 0
    # HL7's own definition, unchanged, may be stored (the HL7 examples load): it changes nothing
    own = dict(definitions.find(HEARTRATE) or {})
    assert put_sd(client, own).status_code == 201
    assert client.post("/Observation", json=heart_rate("bpm", HEARTRATE), headers=FHIR).status_code == 400
    assert client.post("/Observation", json=heart_rate("/min", HEARTRATE), headers=FHIR).status_code == 201


def test_a_transaction_sees_the_profile_it_stores_and_fails_whole(client: TestClient) -> None:
    bundle = factories.transaction(
        factories.post_entry(heart_rate("bpm")),  # before the definition: unknown claim, fine
        factories.post_entry(my_profile()),  # POSTs run in the Bundle's order (PUTs after them)
        factories.post_entry(heart_rate("bpm")),  # after it: refused, the whole transaction with it
    )
    r = client.post("/", json=bundle, headers=FHIR)
    assert r.status_code == 400
    assert errors(r) == [("value", ["Bundle.entry[2].resource.valueQuantity.code"])]
    assert count(client, "StructureDefinition") == 0 and count(client, "Observation") == 0
    bundle["entry"][2]["resource"]["valueQuantity"]["code"] = "/min"
    assert client.post("/", json=bundle, headers=FHIR).status_code == 200
    assert count(client, "StructureDefinition") == 1 and count(client, "Observation") == 2


def test_validate_with_a_stored_profile(client: TestClient) -> None:
    obs = heart_rate("bpm")
    del obs["meta"]
    unknown = client.post(f"/Observation/$validate?profile={MINE}", json=obs, headers=FHIR)
    assert unknown.status_code == 400
    assert put_sd(client, my_profile()).status_code == 201
    r = client.post(f"/Observation/$validate?profile={MINE}", json=obs, headers=FHIR)
    assert r.status_code == 200 and errors(r) == [("value", ["Observation.valueQuantity.code"])]
    assert errors(client.post("/Observation/$validate", json=obs, headers=FHIR)) == []
    r = client.post(f"/Observation/$validate?profile={MINE}|1", json=obs, headers=FHIR)
    assert r.status_code == 400  # no such version stored


# ---------------- isolation: patients, two users of one client, an operator ----------------
def test_writes_follow_a_stored_profile_whatever_the_callers_scopes(smart_client: TestClient) -> None:
    op = {**mint(smart_client, "system/*.cruds", kind="system"), **FHIR}
    assert put_sd(smart_client, my_profile()).status_code == 401
    assert (
        smart_client.put("/StructureDefinition/my-heartrate", json=my_profile(), headers=op).status_code
        == 201
    )
    # a patient app without any StructureDefinition scope cannot escape the profile it claims
    for who in ("p1", "p2"):
        h = {**mint(smart_client, "patient/Observation.cruds", patient=who), **FHIR}
        obs = heart_rate("bpm")
        obs["subject"] = {"reference": f"Patient/{who}"}
        r = smart_client.post("/Observation", json=obs, headers=h)
        assert r.status_code == 400 and errors(r) == [("value", ["Observation.valueQuantity.code"])]
        obs["valueQuantity"]["code"] = "/min"
        assert smart_client.post("/Observation", json=obs, headers=h).status_code == 201
    # two users of one client: the same rule for each
    for me in ("p1", "p2"):
        h = {
            **mint(smart_client, "user/Observation.cruds", kind="patient", fhir_user=f"Patient/{me}"),
            **FHIR,
        }
        obs = heart_rate("bpm")
        obs["subject"] = {"reference": f"Patient/{me}"}
        assert smart_client.post("/Observation", json=obs, headers=h).status_code == 400


def test_validate_names_a_stored_profile_only_for_who_may_search_it(smart_client: TestClient) -> None:
    op = {**mint(smart_client, "system/*.cruds", kind="system"), **FHIR}
    assert (
        smart_client.put("/StructureDefinition/my-heartrate", json=my_profile(), headers=op).status_code
        == 201
    )
    obs = heart_rate("bpm")
    del obs["meta"]
    url = f"/Observation/$validate?profile={MINE}"
    r = smart_client.post(url, json=obs, headers=op)
    assert r.status_code == 200 and errors(r) == [("value", ["Observation.valueQuantity.code"])]
    patient = {**mint(smart_client, "patient/Observation.cruds", patient="p1"), **FHIR}
    assert smart_client.post(url, json=obs, headers=patient).status_code == 400  # not found for it
    reader = {
        **mint(smart_client, "system/Observation.cruds system/StructureDefinition.rs", kind="system"),
        **FHIR,
    }
    r = smart_client.post(url, json=obs, headers=reader)
    assert r.status_code == 200 and errors(r) == [("value", ["Observation.valueQuantity.code"])]
