"""A patient's token reaches only its own data through Patient/$everything, Observation/$lastn and
Observation/$stats (issue 12, acceptance 3; https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html).

Two patients of the public `demo-app` client (two users of the same client), a granular
category-restricted token, and the operator's system token; real access tokens, validated per request.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.store.sql import Store
from tests import factories
from tests.api.test_bulk_isolation import (
    carer_link,  # noqa: F401  (a fixture: A's carer r1)
    operator,
    patient_token,
    token,
)
from tests.bulk_support import http, put, settings

__all__ = ["http", "settings"]  # fixtures (tests/bulk_support.py)

HEART = "8867-4"
Headers = dict[str, str]


def _lab(patient: str, value: float) -> dict[str, Any]:
    obs = factories.observation(patient, value=value)
    obs["category"] = [
        {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}
            ]
        }
    ]
    return obs


@pytest.fixture
def data(store: Store) -> None:
    """Patients A and B; each a vital-sign and a laboratory Observation of the same code, performed
    by one Practitioner P."""
    put(
        store,
        {**factories.patient("Alpha", "Ann"), "id": "A"},
        {**factories.patient("Beta", "Bob"), "id": "B"},
    )
    put(store, {"resourceType": "Practitioner", "id": "P"})
    done = {"performer": [{"reference": "Practitioner/P"}]}
    put(
        store,
        {**factories.observation("A", value=60, **done), "id": "a-vital"},
        {**_lab("A", 100), "id": "a-lab", **done},
        {**factories.observation("B", value=90, **done), "id": "b-vital"},
        {**_lab("B", 200), "id": "b-lab", **done},
    )


def _everything(
    http: TestClient, headers: Headers, path: str = "Patient/A/$everything"
) -> tuple[int, set[str]]:
    response = http.get(f"/{path}", headers=headers)
    ids = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in response.json().get("entry", [])}
    return response.status_code, ids


def _lastn(http: TestClient, headers: Headers, patient: str) -> tuple[int, set[str]]:
    response = http.get("/Observation/$lastn", params={"patient": patient, "max": "5"}, headers=headers)
    return response.status_code, {e["resource"]["id"] for e in response.json().get("entry", [])}


def _stats(http: TestClient, headers: Headers, patient: str) -> tuple[int, list[Any]]:
    params = {"subject": f"Patient/{patient}", "code": HEART, "statistic": "count,sum"}
    response = http.get("/Observation/$stats", params=params, headers=headers)
    body = response.json()
    found = [
        {
            c["code"]["coding"][0]["code"]: c.get("valueInteger", c.get("valueQuantity", {}).get("value"))
            for c in p["resource"]["component"]
        }
        for p in body.get("parameter", [])
    ]
    return response.status_code, found


def test_two_patients_of_the_same_client_see_only_their_own(http: TestClient, data: None) -> None:
    a, b = patient_token(http, "A", 1), patient_token(http, "B", 2)
    assert _everything(http, a) == (200, {"Patient/A", "Observation/a-vital", "Observation/a-lab"})
    assert _everything(http, a, "Patient/$everything")[1] == {
        "Patient/A",
        "Observation/a-vital",
        "Observation/a-lab",
    }
    assert _everything(http, b, "Patient/A/$everything")[0] == 404
    assert _everything(http, b, "Patient/$everything")[1] == {
        "Patient/B",
        "Observation/b-vital",
        "Observation/b-lab",
    }
    assert _lastn(http, a, "A") == (200, {"a-vital", "a-lab"})
    assert _lastn(http, b, "A") == (200, set())
    assert _stats(http, a, "A") == (200, [{"count": 2, "sum": 160.0}])
    assert _stats(http, b, "A") == (200, [])
    assert _stats(http, b, "B") == (200, [{"count": 2, "sum": 290.0}])


def test_a_category_restricted_token_sees_only_that_category(http: TestClient, data: None) -> None:
    vitals = patient_token(
        http,
        "A",
        1,
        "patient/Patient.rs patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
    )
    assert _everything(http, vitals)[1] == {"Patient/A", "Observation/a-vital"}
    assert _lastn(http, vitals, "A") == (200, {"a-vital"})
    assert _stats(http, vitals, "A") == (200, [{"count": 1, "sum": 60.0}])


def test_without_the_scopes_the_operations_are_refused(http: TestClient, data: None) -> None:
    only_patient = patient_token(http, "A", 1, "patient/Patient.rs")
    assert _lastn(http, only_patient, "A")[0] == 403
    assert _stats(http, only_patient, "A")[0] == 403
    only_obs = patient_token(http, "A", 1, "patient/Observation.rs")
    assert _everything(http, only_obs)[0] == 403


@pytest.mark.usefixtures("data", "carer_link")  # the carer's link to A needs A
def test_a_user_token_of_a_practitioner_and_the_operator_see_both(http: TestClient) -> None:
    ops = operator(http)
    everyone = {
        "Patient/A",
        "Patient/B",
        "Observation/a-vital",
        "Observation/a-lab",
        "Observation/b-vital",
        "Observation/b-lab",
        "Practitioner/P",
        "RelatedPerson/r1",  # A's carer, in A's compartment
    }
    assert _everything(http, ops, "Patient/$everything")[1] == everyone
    assert _everything(http, ops)[1] == {
        "Patient/A",
        "Observation/a-vital",
        "Observation/a-lab",
        "Practitioner/P",
        "RelatedPerson/r1",
    }
    assert _lastn(http, ops, "B") == (200, {"b-vital", "b-lab"})
    doctor = token(http, "openid fhirUser user/*.rs", kind="user", user=(3, "Practitioner/P"))
    assert _stats(http, doctor, "B") == (200, [{"count": 2, "sum": 290.0}])
    carer_of_a = token(
        http, "launch/patient openid fhirUser patient/*.rs", user=(2, "RelatedPerson/r1"), patient="A"
    )
    assert _everything(http, carer_of_a, "Patient/B/$everything")[0] == 404
    assert _stats(http, carer_of_a, "B") == (200, [])
