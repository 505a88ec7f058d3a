"""ValueSet/$expand over HTTP (https://hl7.org/fhir/R4/valueset-operation-expand.html)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from .package_oracle import codes, is_a

GENDER = "http://hl7.org/fhir/ValueSet/administrative-gender"
GENDER_CS = "http://hl7.org/fhir/administrative-gender"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"


def contains(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["system"], c["code"]) for c in body["expansion"].get("contains", [])]


def stored_value_set(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "ValueSet",
        "url": url,
        "status": "active",
        "compose": {
            "include": [
                {"system": ROLE_CODE, "filter": [{"property": "concept", "op": "is-a", "value": "CHILD"}]}
            ]
        },
        **extra,
    }


def test_get_expands_a_shipped_value_set_by_url(client: TestClient) -> None:
    r = client.get("/ValueSet/$expand", params={"url": GENDER})
    assert r.status_code == 200
    body = r.json()
    assert body["resourceType"] == "ValueSet" and body["url"] == GENDER and body["status"] == "active"
    assert contains(body) == [(GENDER_CS, c) for c in codes("CodeSystem-administrative-gender")]
    assert body["expansion"]["total"] == 4 and body["expansion"]["timestamp"]
    assert {"name": "used-codesystem", "valueUri": f"{GENDER_CS}|4.0.1"} in body["expansion"]["parameter"]


def test_post_with_parameters_and_paging_and_text_filter(client: TestClient) -> None:
    params = [
        {"name": "url", "valueUri": "http://terminology.hl7.org/ValueSet/v3-FamilyMember"},
        {"name": "offset", "valueInteger": 2},
        {"name": "count", "valueInteger": 3},
    ]
    r = client.post("/ValueSet/$expand", json={"resourceType": "Parameters", "parameter": params})
    assert r.status_code == 200, r.text
    expansion = r.json()["expansion"]
    assert expansion["total"] == len(is_a("CodeSystem-v3-RoleCode", "FAMMEMB"))
    assert expansion["offset"] == 2 and len(expansion["contains"]) == 3
    r = client.get("/ValueSet/$expand", params={"url": GENDER, "filter": "MAL"})
    assert [c["code"] for c in r.json()["expansion"]["contains"]] == ["male", "female"]


def test_post_a_value_set_to_expand(client: TestClient) -> None:
    vs = stored_value_set("http://example.org/vs/sent")
    r = client.post(
        "/ValueSet/$expand",
        json={"resourceType": "Parameters", "parameter": [{"name": "valueSet", "resource": vs}]},
    )
    assert r.status_code == 200, r.text
    assert {c for _, c in contains(r.json())} == is_a("CodeSystem-v3-RoleCode", "CHILD")


def test_value_sets_stored_on_the_server_expand_by_id_and_by_url(client: TestClient) -> None:
    url = "http://example.org/vs/children"
    created = client.post("/ValueSet", json=stored_value_set(url, version="1"))
    assert created.status_code == 201, created.text
    vs_id = created.json()["id"]
    by_id = client.get(f"/ValueSet/{vs_id}/$expand", params={"includeDefinition": "true"})
    assert by_id.status_code == 200, by_id.text
    assert {c for _, c in contains(by_id.json())} == is_a("CodeSystem-v3-RoleCode", "CHILD")
    assert by_id.json()["id"] == vs_id and "compose" in by_id.json()
    by_url = client.get("/ValueSet/$expand", params={"url": url, "valueSetVersion": "1"})
    assert by_url.status_code == 200 and contains(by_url.json()) == contains(by_id.json())
    assert client.get("/ValueSet/$expand", params={"url": url, "valueSetVersion": "2"}).status_code == 404


def test_a_stored_value_set_may_import_shipped_ones_and_be_imported(client: TestClient) -> None:
    url = "http://example.org/vs/gender-and-children"
    vs = {
        "resourceType": "ValueSet",
        "url": url,
        "status": "active",
        "compose": {"include": [{"valueSet": [GENDER]}, {"valueSet": ["http://example.org/vs/children"]}]},
    }
    assert (
        client.post("/ValueSet", json=stored_value_set("http://example.org/vs/children")).status_code == 201
    )
    assert client.post("/ValueSet", json=vs).status_code == 201
    r = client.get("/ValueSet/$expand", params={"url": url})
    assert r.status_code == 200, r.text
    assert len(contains(r.json())) == 4 + len(is_a("CodeSystem-v3-RoleCode", "CHILD"))


def test_unknown_value_sets_are_404_and_unexpandable_ones_422_naming_them(client: TestClient) -> None:
    r = client.get("/ValueSet/$expand", params={"url": "http://example.org/none"})
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
    assert "http://example.org/none" in r.json()["issue"][0]["diagnostics"]
    snomed = "http://hl7.org/fhir/ValueSet/clinical-findings"
    r = client.get("/ValueSet/$expand", params={"url": snomed})
    assert r.status_code == 422 and snomed in r.json()["issue"][0]["diagnostics"]
    assert client.get("/ValueSet/missing/$expand").status_code == 404


def test_bad_requests(client: TestClient) -> None:
    assert client.get("/ValueSet/$expand").status_code == 400
    assert client.get("/ValueSet/$expand", params={"url": GENDER, "count": "-1"}).status_code == 400
    assert client.get("/ValueSet/$expand", params={"url": GENDER, "activeOnly": "maybe"}).status_code == 400
    assert client.get("/ValueSet/$expand", params=[("url", GENDER), ("url", GENDER)]).status_code == 400
    assert client.post("/ValueSet/$expand", json={"resourceType": "Bundle"}).status_code == 400
    assert (
        client.post(
            "/ValueSet/$expand", content=b"{", headers={"content-type": "application/fhir+json"}
        ).status_code
        == 400
    )


def test_stored_value_sets_with_search_special_characters_in_the_url(client: TestClient) -> None:
    for url in ("http://example.org/vs/a,b", "http://example.org/vs/a$b", "http://example.org/vs/a\\b"):
        assert client.post("/ValueSet", json=stored_value_set(url)).status_code == 201
        r = client.get("/ValueSet/$expand", params={"url": url})
        assert r.status_code == 200, r.text
        assert r.json()["url"] == url
