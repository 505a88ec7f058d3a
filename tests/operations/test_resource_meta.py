"""$meta, $meta-add and $meta-delete (https://hl7.org/fhir/R4/resource-operations.html#meta): the labels in
use at system and type level within the caller's grants, an instance's meta, and tags, security labels
and profiles added and deleted as sets; two patients of one client and the operator (issue 12)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.store.sql import Store
from tests import factories
from tests.api.test_bulk_isolation import operator, patient_token
from tests.bulk_support import http, put, settings

__all__ = ["http", "settings"]  # fixtures (tests/bulk_support.py)

FHIR = {"Content-Type": "application/fhir+json"}
CONF = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
BODY_WEIGHT = "http://hl7.org/fhir/StructureDefinition/bodyweight"  # a heart rate does not meet it


def _meta_of(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resourceType"] == "Parameters" and body["parameter"][0]["name"] == "return"
    return dict(body["parameter"][0]["valueMeta"])


def _given(**meta: Any) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": meta}]}


def _tagged(patient: str, rid: str, code: str) -> dict[str, Any]:
    obs = factories.observation(patient)
    return {
        **obs,
        "id": rid,
        "meta": {"tag": [{"system": "urn:tags", "code": code, "display": code.upper()}]},
    }


def test_meta_add_and_delete_change_labels_as_sets_and_make_a_version(client: TestClient) -> None:
    first = {**factories.patient(), "meta": {"tag": [{"system": "urn:tags", "code": "a", "display": "A"}]}}
    rid = client.post("/Patient", json=first, headers=FHIR).json()["id"]
    client.put(f"/Patient/{rid}", json={**first, "id": rid, "gender": "male"}, headers=FHIR)
    added = client.post(
        f"/Patient/{rid}/$meta-add",
        json=_given(
            tag=[
                {"system": "urn:tags", "code": "a", "display": "other display"},
                {"system": "urn:tags", "code": "b"},
            ],
            security=[{"system": CONF, "code": "R"}],
        ),
        headers=FHIR,
    )
    meta = _meta_of(added)
    assert [t["code"] for t in meta["tag"]] == ["a", "b"]  # "a" is not duplicated: identity is system + code
    assert meta["security"] == [{"system": CONF, "code": "R"}]
    assert meta["versionId"] == "3"
    assert client.get("/Patient", params={"_tag": "urn:tags|b"}).json()["total"] == 1  # the index follows
    assert _meta_of(client.get(f"/Patient/{rid}/$meta")) == client.get(f"/Patient/{rid}").json()["meta"]
    assert "tag" in _meta_of(client.get(f"/Patient/{rid}/_history/2/$meta"))
    assert "security" not in _meta_of(client.get(f"/Patient/{rid}/_history/2/$meta"))

    deleted = _meta_of(
        client.post(
            f"/Patient/{rid}/$meta-delete",
            json=_given(tag=[{"system": "urn:tags", "code": "a"}], security=[{"system": CONF, "code": "R"}]),
            headers=FHIR,
        )
    )
    assert [t["code"] for t in deleted["tag"]] == ["b"] and "security" not in deleted
    again = _meta_of(
        client.post(
            f"/Patient/{rid}/$meta-delete", json=_given(tag=[{"system": "urn:x", "code": "z"}]), headers=FHIR
        )
    )
    assert again["versionId"] == deleted["versionId"]  # nothing to delete: no new version


def test_a_profile_added_must_be_met(client: TestClient) -> None:
    pid = client.post("/Patient", json=factories.patient(), headers=FHIR).json()["id"]
    created = client.post("/Observation", json=factories.observation(pid), headers=FHIR)
    assert created.status_code == 201, created.text
    rid = created.json()["id"]
    refused = client.post(f"/Observation/{rid}/$meta-add", json=_given(profile=[BODY_WEIGHT]), headers=FHIR)
    assert refused.status_code == 422, refused.text
    assert "profile" not in client.get(f"/Observation/{rid}").json()["meta"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"resourceType": "Parameters"}, 400),
        (_given(tag=[{"system": "urn:x"}]), 400),
        (_given(profile="http://x"), 400),
        ({"resourceType": "Patient"}, 400),
    ],
)
def test_bad_meta_input_is_400(client: TestClient, body: dict[str, Any], status: int) -> None:
    rid = client.post("/Patient", json=factories.patient(), headers=FHIR).json()["id"]
    response = client.post(f"/Patient/{rid}/$meta-add", json=body, headers=FHIR)
    assert response.status_code == status, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


def test_unknown_resources_and_types_are_404(client: TestClient) -> None:
    assert client.get("/Patient/nobody/$meta").status_code == 404
    assert (
        client.post("/Patient/nobody/$meta-add", json=_given(tag=[{"code": "a"}]), headers=FHIR).status_code
        == 404
    )
    assert client.get("/Nonsense/$meta").status_code == 404
    assert client.get("/Patient/x/$meta-add").status_code in (404, 405)


# ---------------- isolation: two patients of one client, the operator ----------------
@pytest.fixture
def data(store: Store) -> None:
    put(store, {**factories.patient("Alpha"), "id": "A"}, {**factories.patient("Beta"), "id": "B"})
    put(store, _tagged("A", "a-obs", "only-a"), _tagged("B", "b-obs", "only-b"))


def _codes(response: Any) -> set[str]:
    return {t["code"] for t in _meta_of(response).get("tag", [])}


def test_the_summary_holds_only_labels_of_what_the_caller_may_read(http: TestClient, data: None) -> None:
    a, b = patient_token(http, "A", 1), patient_token(http, "B", 2)
    assert _codes(http.get("/Observation/$meta", headers=a)) == {"only-a"}
    assert _codes(http.get("/$meta", headers=a)) == {"only-a"}
    assert _codes(http.get("/Observation/$meta", headers=b)) == {"only-b"}
    assert _codes(http.get("/$meta", headers=operator(http))) == {"only-a", "only-b"}
    assert _codes(http.get("/Patient/$meta", headers=operator(http))) == set()


def test_a_patient_reads_and_changes_only_their_own_meta(http: TestClient, data: None, store: Store) -> None:
    a, b = patient_token(http, "A", 1, "patient/*.cruds"), patient_token(http, "B", 2, "patient/*.cruds")
    assert http.get("/Observation/a-obs/$meta", headers=b).status_code == 404
    assert _codes(http.get("/Observation/a-obs/$meta", headers=a)) == {"only-a"}
    tag = _given(tag=[{"system": "urn:tags", "code": "by-b"}])
    refused = http.post("/Observation/a-obs/$meta-add", json=tag, headers={**b, **FHIR})
    assert refused.status_code in (403, 404), refused.text
    assert http.post(
        "/Observation/a-obs/$meta-delete",
        json=_given(tag=[{"system": "urn:tags", "code": "only-a"}]),
        headers={**b, **FHIR},
    ).status_code in (403, 404)
    with store.read() as tx:
        current = tx.current("Observation", "a-obs")
        assert current is not None and current.version == 1
    read_only = patient_token(http, "A", 1, "patient/*.rs")
    assert (
        http.post("/Observation/a-obs/$meta-add", json=tag, headers={**read_only, **FHIR}).status_code == 403
    )
    assert http.post("/Observation/a-obs/$meta-add", json=tag, headers={**a, **FHIR}).status_code == 200
