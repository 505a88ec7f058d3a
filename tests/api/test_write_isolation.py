"""Patient-context writes stay in the caller's compartment alone, and references are no existence
oracle (https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html,
https://hl7.org/fhir/R4/compartmentdefinition-patient.html).

Patient A must not write a resource that is also in B's compartment (an Observation with
`performer` = Patient/B), nor B change one about A that mentions B; a reference to a resource A
may not read answers exactly like a reference to an id that does not exist.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.store.sql import Store
from tests import factories
from tests.api.test_scope_enforcement import mint

IDENT = "urn:test:obs"
PATCH = {"Content-Type": "application/json-patch+json"}


@pytest.fixture
def data(store: Store) -> None:
    """Patients A and B, an Encounter each, an Observation each, and one about A with B as performer."""
    with store.write() as tx:
        for who in ("A", "B"):
            tx.create(factories.patient(who), who)
            tx.create(factories.encounter(who), f"enc-{who}")
            tx.create(observation(who, f"own-{who}"), f"obs-{who}")
        tx.create(observation("A", "a-mentions-b", performer=[{"reference": "Patient/B"}]), "a-mentions-b")


def observation(patient: str, ident: str = "new", **extra: Any) -> dict[str, Any]:
    return factories.observation(patient, identifier=[{"system": IDENT, "value": ident}], **extra)


@pytest.fixture
def patient_a(smart_client: TestClient, data: None) -> dict[str, str]:
    return mint(smart_client, "patient/*.cruds", patient="A")


@pytest.fixture
def patient_b(smart_client: TestClient, data: None) -> dict[str, str]:
    return mint(smart_client, "patient/*.cruds", patient="B")


# ---------------- every write path, as (status, OperationOutcome) ----------------
Outcome = tuple[int, dict[str, Any] | None]


def _answer(response: Any) -> Outcome:
    body = response.json() if response.content else None
    return response.status_code, body if body and body.get("resourceType") == "OperationOutcome" else None


def _bundle(client: TestClient, headers: dict[str, str], kind: str, entry: dict[str, Any]) -> Outcome:
    response = client.post(
        "/", json={"resourceType": "Bundle", "type": kind, "entry": [entry]}, headers=headers
    )
    if kind == "transaction":
        return _answer(response)
    assert response.status_code == 200, response.text
    answered = response.json()["entry"][0]["response"]
    return int(answered["status"][:3]), answered.get("outcome")


def create(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> Outcome:
    return _answer(client.post("/Observation", json=body, headers=headers))


def conditional_create(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> Outcome:
    matching_nothing = {"If-None-Exist": f"identifier={IDENT}|nothing", **headers}
    return _answer(client.post("/Observation", json=body, headers=matching_nothing))


def update_as_create(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> Outcome:
    return _answer(client.put("/Observation/upserted", json={**body, "id": "upserted"}, headers=headers))


def update(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> Outcome:
    return _answer(client.put("/Observation/obs-A", json={**body, "id": "obs-A"}, headers=headers))


def patch(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> Outcome:
    ops = [{"op": "add", "path": f"/{k}", "value": v} for k, v in body.items() if k != "resourceType"]
    return _answer(client.patch("/Observation/obs-A", json=ops, headers={**headers, **PATCH}))


def fhirpath_patch(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> Outcome:
    return _answer(
        client.patch("/Observation/obs-A", json=factories.fhirpath_patch_setting(body), headers=headers)
    )


def conditional_patch(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> Outcome:
    ops = [{"op": "add", "path": f"/{k}", "value": v} for k, v in body.items() if k != "resourceType"]
    return _answer(client.patch("/Observation?_id=obs-A", json=ops, headers={**headers, **PATCH}))


def conditional_update(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> Outcome:
    return _answer(client.put(f"/Observation?identifier={IDENT}|own-A", json=body, headers=headers))


def conditional_update_as_create(
    client: TestClient, headers: dict[str, str], body: dict[str, Any]
) -> Outcome:
    return _answer(client.put(f"/Observation?identifier={IDENT}|nothing", json=body, headers=headers))


def transaction(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> Outcome:
    return _bundle(client, headers, "transaction", factories.post_entry(body))


def batch(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> Outcome:
    return _bundle(client, headers, "batch", factories.post_entry(body))


def transaction_update(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> Outcome:
    entry = {"resource": {**body, "id": "obs-A"}, "request": {"method": "PUT", "url": "Observation/obs-A"}}
    return _bundle(client, headers, "transaction", entry)


Write = Callable[[TestClient, dict[str, str], dict[str, Any]], Outcome]
WRITES: list[Write] = [
    create,
    conditional_create,
    update_as_create,
    update,
    patch,
    fhirpath_patch,
    conditional_patch,
    conditional_update,
    conditional_update_as_create,
    transaction,
    batch,
    transaction_update,
]


def _unchanged(store: Store) -> None:
    """Nothing of a refused write was kept: no new Observation, A's and the shared one at version 1."""
    with store.read() as tx:
        assert tx.count_history(res_type="Observation") == 3
        for rid in ("obs-A", "a-mentions-b"):
            current = tx.current("Observation", rid)
            assert current is not None and not current.deleted and current.version == 1, rid


# ---------------- defect 2: writes into another patient's compartment ----------------
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(observation("A", performer=[{"reference": "Patient/B"}]), id="performer-is-B"),
        pytest.param(observation("B"), id="subject-is-B"),
        pytest.param(
            observation("A", performer=[{"reference": "http://testserver/Patient/B"}]), id="absolute-url-to-B"
        ),
    ],
)
@pytest.mark.parametrize("write", WRITES, ids=lambda w: w.__name__)
def test_a_patient_cannot_write_a_resource_that_is_also_in_another_patients_compartment(
    smart_client: TestClient, store: Store, patient_a: dict[str, str], write: Write, body: dict[str, Any]
) -> None:
    status, outcome = write(smart_client, patient_a, body)
    assert status == 403
    assert outcome is not None and outcome["issue"][0]["code"] == "forbidden"
    _unchanged(store)


@pytest.mark.parametrize("write", WRITES, ids=lambda w: w.__name__)
def test_a_patient_still_writes_within_their_own_compartment(
    smart_client: TestClient, patient_a: dict[str, str], write: Write
) -> None:
    own = observation("A", performer=[{"reference": "Patient/A"}], encounter={"reference": "Encounter/enc-A"})
    status, outcome = write(smart_client, patient_a, own)
    assert status in (200, 201), outcome


def _change_shared(client: TestClient, headers: dict[str, str], how: str) -> int:
    """`how` changes the Observation about A that names B as performer."""
    replaced = {
        **observation("A", "a-mentions-b", performer=[{"reference": "Patient/B"}]),
        "id": "a-mentions-b",
    }
    replaced["status"] = "amended"
    by_ident = f"Observation?identifier={IDENT}|a-mentions-b"
    status_op = [{"op": "replace", "path": "/status", "value": "amended"}]
    match how:
        case "update":
            return client.put("/Observation/a-mentions-b", json=replaced, headers=headers).status_code
        case "patch":
            return client.patch(
                "/Observation/a-mentions-b", json=status_op, headers={**headers, **PATCH}
            ).status_code
        case "delete":
            return client.delete("/Observation/a-mentions-b", headers=headers).status_code
        case "fhirpath-patch":
            status_set = factories.fhirpath_patch_setting(
                {"resourceType": "Observation", "status": "amended"}
            )
            return client.patch("/Observation/a-mentions-b", json=status_set, headers=headers).status_code
        case "conditional-patch":
            return client.patch(f"/{by_ident}", json=status_op, headers={**headers, **PATCH}).status_code
        case "conditional-update":
            return client.put(f"/{by_ident}", json=replaced, headers=headers).status_code
        case "conditional-delete":
            return client.delete(f"/{by_ident}", headers=headers).status_code
        case "transaction-delete" | "batch-delete":
            kind = how.split("-")[0]
            entry = {"request": {"method": "DELETE", "url": "Observation/a-mentions-b"}}
            return _bundle(client, headers, kind, entry)[0]
    raise AssertionError(how)


CHANGES = [
    "update",
    "patch",
    "fhirpath-patch",
    "conditional-patch",
    "delete",
    "conditional-update",
    "conditional-delete",
    "transaction-delete",
    "batch-delete",
]


@pytest.mark.parametrize("how", CHANGES)
def test_the_other_patient_cannot_change_a_record_about_a_that_mentions_them(
    smart_client: TestClient, store: Store, patient_b: dict[str, str], how: str
) -> None:
    assert (
        smart_client.get("/Observation/a-mentions-b", headers=patient_b).status_code == 200
    )  # in B's compartment
    assert _change_shared(smart_client, patient_b, how) == 403
    _unchanged(store)


@pytest.mark.parametrize("how", CHANGES)
def test_the_subject_cannot_change_their_record_while_it_is_in_another_patients_compartment(
    smart_client: TestClient, store: Store, patient_a: dict[str, str], how: str
) -> None:
    assert _change_shared(smart_client, patient_a, how) == 403
    _unchanged(store)


def test_a_patient_user_with_user_scopes_is_held_to_their_compartment_alone(
    smart_client: TestClient, store: Store, data: None
) -> None:
    headers = mint(smart_client, "user/*.cruds", kind="patient", fhir_user="Patient/A")
    assert create(smart_client, headers, observation("A"))[0] == 201
    assert create(smart_client, headers, observation("A", performer=[{"reference": "Patient/B"}]))[0] == 403


@pytest.mark.parametrize(
    ("scope", "kind", "fhir_user"),
    [("user/*.cruds", "user", "Practitioner/d1"), ("system/*.cruds", "system", None)],
    ids=["clinician", "backend-service"],
)
def test_a_clinician_and_a_backend_service_still_write_resources_that_mention_two_patients(
    smart_client: TestClient, data: None, scope: str, kind: str, fhir_user: str | None
) -> None:
    headers = mint(smart_client, scope, kind=kind, fhir_user=fhir_user)
    both = observation(
        "A", performer=[{"reference": "Patient/B"}], encounter={"reference": "Encounter/enc-B"}
    )
    for write in WRITES:
        status, outcome = write(smart_client, headers, both)
        assert status in (200, 201), (write.__name__, outcome)
    for how in ("update", "patch", "delete"):
        assert _change_shared(smart_client, headers, how) in (200, 204), how


def test_a_batch_entry_refused_by_its_closing_reference_check_is_answered_once(
    client: TestClient, data: None
) -> None:
    entries = [
        factories.post_entry(observation("A", encounter={"reference": "Encounter/enc-X"})),
        factories.post_entry(observation("A")),
    ]
    response = client.post("/", json={"resourceType": "Bundle", "type": "batch", "entry": entries})
    assert [e["response"]["status"][:3] for e in response.json()["entry"]] == ["422", "201"]


# ---------------- defect 8: references are no existence oracle ----------------
def _as_unknown(outcome: Outcome, rid: str) -> Outcome:
    """The answer with the referenced id blanked: what must not differ between the two cases."""
    status, body = outcome
    assert body is not None
    return status, {"text": json.dumps(body, sort_keys=True).replace(rid, "<id>")}


@pytest.mark.parametrize("write", WRITES, ids=lambda w: w.__name__)
def test_a_reference_to_another_patients_encounter_answers_like_an_unknown_id(
    smart_client: TestClient, store: Store, patient_a: dict[str, str], write: Write
) -> None:
    hidden = write(smart_client, patient_a, observation("A", encounter={"reference": "Encounter/enc-B"}))
    unknown = write(smart_client, patient_a, observation("A", encounter={"reference": "Encounter/enc-X"}))
    assert hidden[0] == unknown[0] == 422
    assert _as_unknown(hidden, "enc-B") == _as_unknown(unknown, "enc-X")
    _unchanged(store)


def test_a_write_only_patient_app_learns_nothing_of_other_patients_ids(
    smart_client: TestClient, store: Store, data: None
) -> None:
    headers = mint(smart_client, "patient/Observation.c", patient="A")
    assert create(smart_client, headers, observation("A"))[0] == 201  # its own Patient: no read scope needed
    hidden = create(smart_client, headers, observation("A", derivedFrom=[{"reference": "Observation/obs-B"}]))
    unknown = create(
        smart_client, headers, observation("A", derivedFrom=[{"reference": "Observation/obs-X"}])
    )
    assert hidden[0] == unknown[0] == 422
    assert _as_unknown(hidden, "obs-B") == _as_unknown(unknown, "obs-X")


def test_a_granular_reader_cannot_probe_resources_outside_its_restriction(
    smart_client: TestClient, store: Store, data: None
) -> None:
    """A clinician whose Encounter reads are restricted to one class: other Encounters are unknown."""
    headers = mint(
        smart_client,
        "user/Observation.c user/Encounter.r?class=EMER",
        kind="user",
        fhir_user="Practitioner/d1",
    )
    hidden = create(smart_client, headers, observation("A", encounter={"reference": "Encounter/enc-A"}))
    unknown = create(smart_client, headers, observation("A", encounter={"reference": "Encounter/enc-X"}))
    assert hidden[0] == unknown[0] == 422
    assert _as_unknown(hidden, "enc-A") == _as_unknown(unknown, "enc-X")


@pytest.mark.parametrize(
    ("scope", "kind", "fhir_user"),
    [("user/Observation.c", "user", "Practitioner/d1"), ("system/Observation.c", "system", None)],
    ids=["clinician", "backend-service"],
)
def test_unrestricted_writers_may_still_reference_what_exists_without_a_read_scope(
    smart_client: TestClient, data: None, scope: str, kind: str, fhir_user: str | None
) -> None:
    headers = mint(smart_client, scope, kind=kind, fhir_user=fhir_user)
    assert (
        create(smart_client, headers, observation("B", encounter={"reference": "Encounter/enc-B"}))[0] == 201
    )
    assert (
        create(smart_client, headers, observation("B", encounter={"reference": "Encounter/enc-X"}))[0] == 422
    )
