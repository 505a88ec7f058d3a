"""CodeSystem/$lookup, ValueSet/$validate-code and CodeSystem/$subsumes over HTTP
(https://hl7.org/fhir/R4/codesystem-operation-lookup.html, valueset-operation-validate-code.html,
codesystem-operation-subsumes.html), and their declaration in the CapabilityStatement."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from .package_oracle import children

ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
GENDER = "http://hl7.org/fhir/ValueSet/administrative-gender"
GENDER_CS = "http://hl7.org/fhir/administrative-gender"
COVERAGE = "http://terminology.hl7.org/ValueSet/v3-ActCoverageTypeCode"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def values(body: dict[str, Any], name: str) -> list[Any]:
    out = []
    for p in body["parameter"]:
        if p["name"] == name:
            out.append(next(v for k, v in p.items() if k.startswith("value")))
    return out


def properties(body: dict[str, Any]) -> list[tuple[str, Any]]:
    out = []
    for p in body["parameter"]:
        if p["name"] == "property":
            parts = {q["name"]: next(v for k, v in q.items() if k.startswith("value")) for q in p["part"]}
            out.append((parts["code"], parts["value"]))
    return out


def test_lookup_gives_name_version_display_and_hierarchy(client: TestClient) -> None:
    r = client.get("/CodeSystem/$lookup", params={"system": ROLE_CODE, "code": "DAUC"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resourceType"] == "Parameters"
    assert values(body, "display") == ["daughter"] and values(body, "name") and values(body, "version")
    props = properties(body)
    assert ("parent", "CHILD") in props and ("inactive", False) in props
    assert {v for k, v in props if k == "child"} == children("CodeSystem-v3-RoleCode")["DAUC"]


def test_lookup_by_coding_with_chosen_properties(client: TestClient) -> None:
    params = [
        {"name": "coding", "valueCoding": {"system": ROLE_CODE, "code": "_AffiliationRoleType"}},
        {"name": "property", "valueCode": "notSelectable"},
    ]
    r = client.post("/CodeSystem/$lookup", json={"resourceType": "Parameters", "parameter": params})
    assert r.status_code == 200, r.text
    assert properties(r.json()) == [("notSelectable", True)]


def test_lookup_errors(client: TestClient) -> None:
    assert client.get("/CodeSystem/$lookup", params={"system": ROLE_CODE, "code": "NOPE"}).status_code == 404
    assert (
        client.get("/CodeSystem/$lookup", params={"system": "http://loinc.org", "code": "1-8"}).status_code
        == 404
    )
    snomed = client.get(
        "/CodeSystem/$lookup", params={"system": "http://snomed.info/sct", "code": "73211009"}
    )
    assert snomed.status_code == 422
    assert client.get("/CodeSystem/$lookup", params={"code": "DAUC"}).status_code == 400
    assert (
        client.get(
            "/CodeSystem/$lookup", params={"system": ROLE_CODE, "code": "DAUC", "version": "1"}
        ).status_code
        == 404
    )


def test_validate_code_in_and_out_of_a_value_set(client: TestClient) -> None:
    ok = client.get("/ValueSet/$validate-code", params={"url": GENDER, "system": GENDER_CS, "code": "female"})
    assert ok.status_code == 200, ok.text
    assert values(ok.json(), "result") == [True] and values(ok.json(), "display") == ["Female"]
    wrong = client.get(
        "/ValueSet/$validate-code",
        params={"url": GENDER, "system": "http://example.org/other", "code": "female"},
    )
    assert values(wrong.json(), "result") == [False] and GENDER in values(wrong.json(), "message")[0]


def test_validate_code_warns_about_a_wrong_display(client: TestClient) -> None:
    r = client.get(
        "/ValueSet/$validate-code",
        params={"url": GENDER, "system": GENDER_CS, "code": "male", "display": "Mail"},
    )
    assert values(r.json(), "result") == [True] and "Mail" in values(r.json(), "message")[0]


def test_validate_a_codeable_concept_and_abstract_codes(client: TestClient) -> None:
    concept = {
        "coding": [
            {"system": "http://loinc.org", "code": "x"},
            {"system": ACT_CODE, "code": "_ActCoverageTypeCode"},
        ]
    }
    params: list[dict[str, Any]] = [
        {"name": "url", "valueUri": COVERAGE},
        {"name": "codeableConcept", "valueCodeableConcept": concept},
    ]
    body = {"resourceType": "Parameters", "parameter": params}
    r = client.post("/ValueSet/$validate-code", json=body)
    assert r.status_code == 200, r.text
    assert values(r.json(), "result") == [False] and "abstract" in values(r.json(), "message")[0]
    params.append({"name": "abstract", "valueBoolean": True})
    assert values(client.post("/ValueSet/$validate-code", json=body).json(), "result") == [True]


def test_validate_code_against_a_stored_value_set(client: TestClient) -> None:
    vs = {"resourceType": "ValueSet", "status": "active", "compose": {"include": [{"valueSet": [GENDER]}]}}
    vs_id = client.post("/ValueSet", json=vs).json()["id"]
    r = client.get(f"/ValueSet/{vs_id}/$validate-code", params={"system": GENDER_CS, "code": "other"})
    assert r.status_code == 200 and values(r.json(), "result") == [True]


def test_validate_code_errors(client: TestClient) -> None:
    assert client.get("/ValueSet/$validate-code", params={"url": GENDER, "code": "male"}).status_code == 400
    assert client.get("/ValueSet/$validate-code", params={"url": GENDER}).status_code == 400
    unknown = client.get(
        "/ValueSet/$validate-code", params={"url": "http://example.org/x", "system": "s", "code": "c"}
    )
    assert unknown.status_code == 404
    snomed = "http://hl7.org/fhir/ValueSet/condition-code"
    refused = client.get(
        "/ValueSet/$validate-code", params={"url": snomed, "system": "http://snomed.info/sct", "code": "1"}
    )
    assert refused.status_code == 422 and snomed in refused.json()["issue"][0]["diagnostics"]


def test_subsumes_outcomes(client: TestClient) -> None:
    def outcome(a: str, b: str) -> list[Any]:
        r = client.get("/CodeSystem/$subsumes", params={"system": ROLE_CODE, "codeA": a, "codeB": b})
        assert r.status_code == 200, r.text
        return values(r.json(), "outcome")

    assert outcome("CHILD", "DAUADOPT") == ["subsumes"]
    assert outcome("DAUADOPT", "CHILD") == ["subsumed-by"]
    assert outcome("SON", "SON") == ["equivalent"]
    assert outcome("SON", "DAU") == ["not-subsumed"]


def test_subsumes_with_codings(client: TestClient) -> None:
    params = [
        {"name": "codingA", "valueCoding": {"system": ROLE_CODE, "code": "FAMMEMB"}},
        {"name": "codingB", "valueCoding": {"system": ROLE_CODE, "code": "SON"}},
    ]
    r = client.post("/CodeSystem/$subsumes", json={"resourceType": "Parameters", "parameter": params})
    assert values(r.json(), "outcome") == ["subsumes"]


def test_subsumes_errors(client: TestClient) -> None:
    base = {"codeA": "CHILD", "codeB": "SON"}
    assert client.get("/CodeSystem/$subsumes", params=base).status_code == 400
    assert (
        client.get("/CodeSystem/$subsumes", params={**base, "system": "http://example.org/cs"}).status_code
        == 404
    )
    assert (
        client.get("/CodeSystem/$subsumes", params={**base, "system": "http://snomed.info/sct"}).status_code
        == 422
    )
    assert (
        client.get(
            "/CodeSystem/$subsumes", params={"system": ROLE_CODE, "codeA": "CHILD", "codeB": "NOPE"}
        ).status_code
        == 400
    )


def test_the_capability_statement_declares_the_operations(client: TestClient) -> None:
    rest = client.get("/metadata").json()["rest"][0]
    by_type = {r["type"]: r for r in rest["resource"]}
    # $validate (profiles) and $meta, $meta-add, $meta-delete are declared on every type; the rest
    # are the terminology operations
    every = {"validate", "meta", "meta-add", "meta-delete"}
    assert {o["name"] for o in by_type["ValueSet"]["operation"]} == {"expand", "validate-code"} | every
    assert {o["name"] for o in by_type["CodeSystem"]["operation"]} == {"lookup", "subsumes"} | every
    hl7 = "http://hl7.org/fhir/OperationDefinition/"
    assert {o["definition"] for o in by_type["CodeSystem"]["operation"]} == {
        hl7 + "CodeSystem-lookup",
        hl7 + "CodeSystem-subsumes",
        hl7 + "Resource-validate",
        hl7 + "Resource-meta",
        hl7 + "Resource-meta-add",
        hl7 + "Resource-meta-delete",
    }
