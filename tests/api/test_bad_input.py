"""Bad input gets a 4xx OperationOutcome naming the problem, never a 500 (https://hl7.org/fhir/R4/http.html)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests import factories

FHIR = {"Content-Type": "application/fhir+json"}


def _issue(r: object) -> dict:  # type: ignore[type-arg]
    body = r.json()  # type: ignore[attr-defined]
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]  # type: ignore[no-any-return]


def test_invalid_json_is_400(client: TestClient) -> None:
    r = client.post("/Patient", content=b'{"resourceType": "Patient",', headers=FHIR)
    assert r.status_code == 400
    assert "not valid JSON" in _issue(r)["diagnostics"]


def test_empty_body_is_400(client: TestClient) -> None:
    r = client.post("/Patient", content=b"", headers=FHIR)
    assert r.status_code == 400


def test_wrong_resource_type_for_url_is_400(client: TestClient) -> None:
    r = client.post("/Observation", json=factories.patient(), headers=FHIR)
    assert r.status_code == 400
    assert "does not match" in _issue(r)["diagnostics"]
    assert _issue(r)["expression"] == ["Observation.resourceType"]


def test_unknown_element_is_400_with_its_path(client: TestClient) -> None:
    r = client.post("/Patient", json={**factories.patient(), "favouriteColour": "blue"}, headers=FHIR)
    assert r.status_code == 400
    assert _issue(r)["expression"] == ["Patient.favouriteColour"]


def test_wrong_data_type_is_400_with_its_path(client: TestClient) -> None:
    r = client.post("/Patient", json={**factories.patient(), "birthDate": "yesterday"}, headers=FHIR)
    assert r.status_code == 400
    assert _issue(r)["expression"] == ["Patient.birthDate"]
    r = client.post(
        "/Observation", json={**factories.observation(), "code": {"coding": [{"system": 7}]}}, headers=FHIR
    )
    assert _issue(r)["expression"] == ["Observation.code.coding[0].system"]


def test_every_problem_is_reported(client: TestClient) -> None:
    body = {**factories.patient(), "birthDate": "x", "gender": 3, "extra": 1}
    r = client.post("/Patient", json=body, headers=FHIR)
    paths = {i["expression"][0] for i in r.json()["issue"]}
    assert {"Patient.birthDate", "Patient.gender", "Patient.extra"} <= paths


def test_missing_required_element_is_400(client: TestClient) -> None:
    obs = factories.observation()
    del obs["status"]
    r = client.post("/Observation", json=obs, headers=FHIR)
    assert r.status_code == 400
    assert _issue(r)["expression"] == ["Observation.status"]


def test_broken_reference_is_422_naming_the_element(client: TestClient) -> None:
    r = client.post("/Observation", json=factories.observation("ghost"), headers=FHIR)
    assert r.status_code == 422
    assert _issue(r)["expression"] == ["Observation.subject.reference"]


def test_reference_to_deleted_resource_is_422(client: TestClient) -> None:
    pid = client.post("/Patient", json=factories.patient(), headers=FHIR).json()["id"]
    client.delete(f"/Patient/{pid}")
    assert client.post("/Observation", json=factories.observation(pid), headers=FHIR).status_code == 422


def test_oversized_body_is_413(client: TestClient) -> None:
    big = {**factories.patient(), "name": [{"family": "x" * 2_000_000}]}
    r = client.post("/Patient", json=big, headers=FHIR)
    assert r.status_code == 413
    assert _issue(r)["code"] == "too-costly"


def test_invalid_id_in_update_url_is_400(client: TestClient) -> None:
    r = client.put("/Patient/bad$id", json={**factories.patient(), "id": "bad$id"}, headers=FHIR)
    assert r.status_code == 400


def test_body_that_is_not_an_object_is_400(client: TestClient) -> None:
    assert client.post("/Patient", json=[1, 2], headers=FHIR).status_code == 400
    assert client.post("/Patient", json="text", headers=FHIR).status_code == 400


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/no/such/deep/path/here", 404),
        ("PATCH", "/Patient", 400),  # a conditional patch without criteria
        ("PATCH", "/Patient/1/_history", 405),
        ("POST", "/Patient/1", 405),
    ],
)
def test_unknown_routes_and_wrong_methods_get_operation_outcomes(
    client: TestClient, method: str, path: str, status: int
) -> None:
    r = client.request(method, path, json={}, headers=FHIR)
    assert r.status_code == status
    assert r.json()["resourceType"] == "OperationOutcome"


def test_unexpected_failure_is_500_without_internal_details(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fhir_server.interactions import read

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret connection string postgres://user:pw@db")

    monkeypatch.setattr(read, "read", boom)
    r = client.get("/Patient/x")
    assert r.status_code == 500
    assert "secret" not in r.text
    assert r.json()["issue"][0]["code"] == "exception"


def test_control_characters_in_strings_are_400_naming_the_element(client: TestClient) -> None:
    body = {**factories.patient(), "name": [{"family": "Nul\u0000Byte"}]}
    r = client.post("/Patient", json=body, headers=FHIR)
    assert r.status_code == 400
    assert _issue(r)["expression"] == ["Patient.name[0].family"]
    ok = client.post(
        "/Patient", json={**factories.patient(), "name": [{"text": "tab\tand\nnewline"}]}, headers=FHIR
    )
    assert ok.status_code == 201


@pytest.mark.parametrize("vid", ["2147483648", "10000000000", "9223372036854775807", "0"])
def test_a_version_id_beyond_the_stored_range_is_404(client: TestClient, vid: str) -> None:
    """Found by schemathesis over /openapi.json (issue 13): on PostgreSQL a vread of a version id past 32
    bits was a 500 (numeric value out of range) before the comparison was skipped."""
    pid = client.post("/Patient", json=factories.patient(), headers=FHIR).json()["id"]
    r = client.get(f"/Patient/{pid}/_history/{vid}")
    assert r.status_code == 404, r.text
    assert client.get(f"/Patient/{pid}/_history/1").status_code == 200
