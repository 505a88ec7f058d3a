"""SMART scopes enforced on every interaction (https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html).

With a patient token for A, every way to reach B's data gets nothing, 404 or 403; a granular
`patient/Observation.rs?category=...|vital-signs` token never returns a laboratory Observation.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.auth.scopes import parse
from fhir_server.auth.tokens import Grant, new_grant_id
from fhir_server.auth.users import User
from fhir_server.store.sql import Store
from tests import factories
from tests.auth.smart_flow import Authorization, add_user, authorize, bearer, exchange, register

VITALS = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"


def mint(
    http: TestClient,
    scope: str,
    *,
    kind: str = "patient",
    patient: str | None = None,
    fhir_user: str | None = None,
) -> dict[str, str]:
    """Authorization headers with a freshly issued access token (as the token endpoint would issue)."""
    auth: Any = http.app.state.auth  # type: ignore[attr-defined]
    user = User(1, "u", fhir_user) if fhir_user else None
    context = {"patient": patient} if patient else {}
    grant = Grant(new_grant_id(), "app", kind, parse(scope), user, context)  # type: ignore[arg-type]
    with auth.store.write() as tx:
        body = auth.issuer.issue(tx.conn, grant, now=int(time.time()))
    return bearer(body["access_token"])


def observation(patient: str, category: str, **extra: Any) -> dict[str, Any]:
    obs = factories.observation(patient, **extra)
    obs["category"][0]["coding"][0]["code"] = category
    return obs


@pytest.fixture
def data(store: Store) -> dict[str, str]:
    """Patients A and B, each with a vital-signs and a laboratory Observation and an Encounter."""
    ids: dict[str, str] = {}
    with store.write() as tx:
        tx.create(factories.patient("Alpha", "Ann"), "A")
        tx.create(factories.patient("Beta", "Bob"), "B")
        for who in ("A", "B"):
            for category in ("vital-signs", "laboratory"):
                ids[f"{who}-{category}"] = tx.create(observation(who, category)).res_id
            ids[f"{who}-encounter"] = tx.create(
                {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "class": {"code": "AMB"},
                    "subject": {"reference": f"Patient/{who}"},
                }
            ).res_id
        # A's record mentions B (a family member as performer): B must still not leak through it
        ids["A-mentions-B"] = tx.create(
            observation("A", "vital-signs", performer=[{"reference": "Patient/B"}])
        ).res_id
    return ids


def found(bundle: dict[str, Any]) -> set[str]:
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])}


def patients_in(bundle: dict[str, Any]) -> set[str]:
    out = set()
    for entry in bundle.get("entry", []):
        resource = entry["resource"]
        if resource["resourceType"] == "Patient":
            out.add(resource["id"])
        elif "subject" in resource:
            out.add(resource["subject"]["reference"].split("/")[1])
    return out


@pytest.fixture
def patient_a(smart_client: TestClient, data: dict[str, str]) -> dict[str, str]:
    return mint(smart_client, "patient/*.cruds", patient="A")


def test_a_patient_token_reads_its_own_record_and_nothing_of_b(
    smart_client: TestClient, data: dict[str, str], patient_a: dict[str, str]
) -> None:
    # SHALL 95, 119, 136, 170, 266
    assert smart_client.get("/Patient/A", headers=patient_a).status_code == 200
    assert smart_client.get(f"/Observation/{data['A-laboratory']}", headers=patient_a).status_code == 200
    for path in ("/Patient/B", f"/Observation/{data['B-vital-signs']}", f"/Encounter/{data['B-encounter']}"):
        assert smart_client.get(path, headers=patient_a).status_code == 404, path
        assert smart_client.get(path + "/_history/1", headers=patient_a).status_code == 404, path
        assert smart_client.get(path + "/_history", headers=patient_a).status_code == 404, path


@pytest.mark.parametrize(
    "query",
    [
        "/Observation",
        "/Observation?subject=Patient/B",
        "/Observation?patient=B",
        "/Observation?patient=http://testserver/Patient/B",
        "/Patient",
        "/Patient?_id=B",
        "/Patient?name=Beta",
        "/Encounter",
        "/Patient/B/Observation",
        "/Patient/B/*",
        "/?_type=Patient,Observation,Encounter",
        "/Observation?_include=Observation:performer",
        "/Observation?_include=Observation:subject&_include=Observation:performer",
        "/Patient?_revinclude=Observation:subject",
        "/Patient?_revinclude=Observation:performer",
        "/Observation?_sort=-date&_count=1",
    ],
)
def test_no_search_of_a_patient_token_returns_another_patients_data(
    smart_client: TestClient, data: dict[str, str], patient_a: dict[str, str], query: str
) -> None:
    response = smart_client.get(query, headers=patient_a)
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert "B" not in patients_in(bundle)
    assert "Patient/B" not in found(bundle)
    ids_of_b = {data["B-vital-signs"], data["B-laboratory"], data["B-encounter"]}
    assert not ids_of_b & {e["resource"]["id"] for e in bundle.get("entry", [])}


def test_totals_count_only_what_the_token_may_see(
    smart_client: TestClient, data: dict[str, str], patient_a: dict[str, str]
) -> None:
    assert smart_client.get("/Observation?_summary=count", headers=patient_a).json()["total"] == 3
    assert smart_client.get("/Observation?_total=accurate", headers=patient_a).json()["total"] == 3
    assert smart_client.get("/Patient?_summary=count", headers=patient_a).json()["total"] == 1


@pytest.mark.parametrize(
    "query",
    [
        "/Observation?subject:Patient.name=Beta",
        "/Observation?patient.name=Alpha",
        "/Patient?_has:Observation:subject:category=laboratory",
    ],
)
def test_chains_and_has_are_refused_for_patient_tokens(
    smart_client: TestClient, data: dict[str, str], patient_a: dict[str, str], query: str
) -> None:
    response = smart_client.get(query, headers=patient_a)
    assert response.status_code == 403
    assert response.json()["resourceType"] == "OperationOutcome"


def test_history_of_a_type_or_the_system_shows_only_the_patients_versions(
    smart_client: TestClient, data: dict[str, str], patient_a: dict[str, str]
) -> None:
    for path in ("/Observation/_history", "/_history", "/Patient/_history"):
        bundle = smart_client.get(path, headers=patient_a).json()
        assert bundle["entry"], path
        assert "B" not in patients_in(bundle), path


def test_a_patient_cannot_write_outside_their_compartment(
    smart_client: TestClient, store: Store, data: dict[str, str], patient_a: dict[str, str]
) -> None:
    own = smart_client.post("/Observation", json=observation("A", "vital-signs"), headers=patient_a)
    assert own.status_code == 201
    assert (
        smart_client.post("/Observation", json=observation("B", "vital-signs"), headers=patient_a).status_code
        == 403
    )
    b_obs = data["B-vital-signs"]
    changed = {**observation("A", "vital-signs"), "id": b_obs}
    assert smart_client.put(f"/Observation/{b_obs}", json=changed, headers=patient_a).status_code == 403
    moved = {**observation("B", "vital-signs"), "id": data["A-vital-signs"]}
    assert (
        smart_client.put(f"/Observation/{data['A-vital-signs']}", json=moved, headers=patient_a).status_code
        == 403
    )
    patch = [{"op": "replace", "path": "/status", "value": "amended"}]
    patched = smart_client.patch(
        f"/Observation/{b_obs}",
        json=patch,
        headers={**patient_a, "Content-Type": "application/json-patch+json"},
    )
    assert patched.status_code == 403
    assert smart_client.delete(f"/Observation/{b_obs}", headers=patient_a).status_code == 403
    assert smart_client.delete("/Patient/B", headers=patient_a).status_code == 403
    assert smart_client.delete("/Observation?subject=Patient/B", headers=patient_a).status_code == 204
    with store.read() as tx:
        for key in ("B-vital-signs", "B-laboratory", "A-vital-signs"):
            current = tx.current("Observation", data[key])
            assert current is not None and not current.deleted and current.version == 1, key
        assert tx.current("Patient", "B") is not None


def test_batch_and_transaction_entries_are_checked_one_by_one(
    smart_client: TestClient, store: Store, data: dict[str, str], patient_a: dict[str, str]
) -> None:
    # SHALL 130
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": "Patient/A"}},
            {"request": {"method": "GET", "url": "Patient/B"}},
            {"request": {"method": "GET", "url": "Observation?subject=Patient/B"}},
            {
                "request": {"method": "POST", "url": "Observation"},
                "resource": observation("B", "vital-signs"),
            },
            {"request": {"method": "DELETE", "url": f"Observation/{data['B-laboratory']}"}},
        ],
    }
    entries = smart_client.post("/", json=batch, headers=patient_a).json()["entry"]
    assert [e["response"]["status"][:3] for e in entries] == ["200", "404", "200", "403", "403"]
    assert "entry" not in entries[2]["resource"] or not entries[2]["resource"]["entry"]
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "request": {"method": "POST", "url": "Observation"},
                "resource": observation("A", "vital-signs"),
            },
            {
                "request": {"method": "POST", "url": "Observation"},
                "resource": observation("B", "vital-signs"),
            },
        ],
    }
    assert smart_client.post("/", json=transaction, headers=patient_a).status_code == 403
    with store.read() as tx:
        assert tx.count_history(res_type="Observation") == 5  # nothing of the refused transaction was kept


def test_a_scope_without_the_interaction_is_403_insufficient_scope(
    smart_client: TestClient, data: dict[str, str]
) -> None:
    # SHALL 95, 266
    read_only = mint(smart_client, "patient/Observation.rs", patient="A")
    response = smart_client.post("/Observation", json=observation("A", "vital-signs"), headers=read_only)
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert smart_client.get("/Patient/A", headers=read_only).status_code == 403
    assert smart_client.get("/Encounter", headers=read_only).status_code == 403


def test_patient_scopes_without_a_patient_in_context_grant_nothing(
    smart_client: TestClient, data: dict[str, str]
) -> None:
    # SHALL 164
    assert smart_client.get("/Patient/A", headers=mint(smart_client, "patient/*.rs")).status_code == 403


def test_a_granular_vital_signs_token_never_returns_a_laboratory_observation(
    smart_client: TestClient, data: dict[str, str]
) -> None:
    # SHALL 370 (permission-v2)
    headers = mint(smart_client, f"patient/Observation.rs?category={VITALS} patient/Patient.rs", patient="A")
    for query in (
        "/Observation",
        "/Observation?category=laboratory",
        f"/Observation?_id={data['A-laboratory']}",
        "/Patient?_revinclude=Observation:subject",
        "/Patient/A/Observation",
        "/Observation/_history",
    ):
        response = smart_client.get(query, headers=headers)
        assert response.status_code == 200, (query, response.text)
        categories = {
            c["code"]
            for e in response.json().get("entry", [])
            for cat in e["resource"].get("category", [])
            for c in cat["coding"]
        }
        assert "laboratory" not in categories, query
    listed = smart_client.get("/Observation", headers=headers).json()
    assert {e["resource"]["id"] for e in listed["entry"]} == {data["A-vital-signs"], data["A-mentions-B"]}
    assert smart_client.get(f"/Observation/{data['A-laboratory']}", headers=headers).status_code == 404
    assert smart_client.get(f"/Observation/{data['A-vital-signs']}", headers=headers).status_code == 200


@pytest.mark.parametrize("kind", ["patient", "system"])
def test_a_granular_token_does_not_see_old_versions_outside_its_restriction(
    smart_client: TestClient, store: Store, data: dict[str, str], kind: str
) -> None:
    """An Observation that was laboratory (version 1) and is vital-signs now (version 2): a vital-signs
    token reads version 2, but neither vread nor history shows it version 1."""
    from tests.bulk_support import update

    lab = data["A-laboratory"]
    vitals = observation("A", "vital-signs")
    update(store, "Observation", lab, category=vitals["category"])
    scope = f"{kind}/Observation.rs?category={VITALS}"
    headers = mint(smart_client, scope, kind=kind, patient="A" if kind == "patient" else None)
    assert smart_client.get(f"/Observation/{lab}", headers=headers).status_code == 200
    assert smart_client.get(f"/Observation/{lab}/_history/2", headers=headers).status_code == 200
    assert smart_client.get(f"/Observation/{lab}/_history/1", headers=headers).status_code == 404
    versions = smart_client.get(f"/Observation/{lab}/_history", headers=headers).json()
    assert [e["resource"]["meta"]["versionId"] for e in versions.get("entry", [])] == ["2"]
    everything = smart_client.get("/Observation/_history", headers=headers).json()
    shown = {(e["resource"]["id"], e["resource"]["meta"]["versionId"]) for e in everything.get("entry", [])}
    assert (lab, "2") in shown and (lab, "1") not in shown


def test_a_granular_write_scope_cannot_write_other_categories(
    smart_client: TestClient, data: dict[str, str]
) -> None:
    headers = mint(smart_client, f"patient/Observation.cu?category={VITALS}", patient="A")
    assert (
        smart_client.post("/Observation", json=observation("A", "vital-signs"), headers=headers).status_code
        == 201
    )
    assert (
        smart_client.post("/Observation", json=observation("A", "laboratory"), headers=headers).status_code
        == 403
    )


def test_a_patient_user_with_user_scopes_is_held_to_their_own_record(
    smart_client: TestClient, data: dict[str, str]
) -> None:
    headers = mint(smart_client, "user/*.rs", kind="patient", fhir_user="Patient/A")
    assert smart_client.get("/Patient/A", headers=headers).status_code == 200
    assert smart_client.get("/Patient/B", headers=headers).status_code == 404
    assert patients_in(smart_client.get("/Observation", headers=headers).json()) == {"A"}


def test_a_clinician_and_a_backend_service_see_everyone(
    smart_client: TestClient, data: dict[str, str]
) -> None:
    # SHALL 140, 142, 144
    for headers in (
        mint(smart_client, "user/*.rs", kind="user", fhir_user="Practitioner/d1"),
        mint(smart_client, "system/*.rs", kind="system"),
    ):
        assert patients_in(smart_client.get("/Observation", headers=headers).json()) == {"A", "B"}
        assert smart_client.get("/Observation?subject:Patient.name=Beta", headers=headers).status_code == 200


def test_a_standalone_launch_token_is_enforced_end_to_end(
    smart_client: TestClient, store: Store, data: dict[str, str]
) -> None:
    register(store)
    add_user(store, "ann", "Patient/A")
    request = Authorization(scope="launch/patient patient/*.rs")
    token = exchange(smart_client, request, authorize(smart_client, request, "ann")["code"]).json()
    headers = bearer(token["access_token"])
    assert smart_client.get("/Patient/A", headers=headers).status_code == 200
    assert smart_client.get("/Patient/B", headers=headers).status_code == 404
    assert patients_in(smart_client.get("/Observation", headers=headers).json()) == {"A"}


def test_the_update_scope_also_allows_update_as_create(
    smart_client: TestClient, data: dict[str, str]
) -> None:
    # SHALL 123
    headers = mint(smart_client, "patient/Observation.u", patient="A")
    new = {**observation("A", "vital-signs"), "id": "upserted"}
    assert smart_client.put("/Observation/upserted", json=new, headers=headers).status_code == 201
    other = {**observation("B", "vital-signs"), "id": "upserted-b"}
    assert smart_client.put("/Observation/upserted-b", json=other, headers=headers).status_code == 403
