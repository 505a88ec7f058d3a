"""Token search with :in, :not-in, :below and :above over the terminology the server has
(https://hl7.org/fhir/R4/search.html#modifiers), end to end over HTTP on both databases."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests import factories

OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
OBS_CATEGORY_VS = "http://hl7.org/fhir/ValueSet/observation-category"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_CATEGORY_VS = "http://hl7.org/fhir/ValueSet/condition-category"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
SNOMED_VS = "http://hl7.org/fhir/ValueSet/condition-code"


def create(client: TestClient, resource: dict[str, Any]) -> str:
    r = client.post(f"/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def found(client: TestClient, query: str) -> set[str]:
    r = client.get(f"{query}&_count=100&_total=accurate")
    assert r.status_code == 200, r.text
    bundle = r.json()
    ids = {e["resource"]["id"] for e in bundle.get("entry", [])}
    assert bundle["total"] == len(ids)
    return ids


def observation(category: tuple[str, str] | None) -> dict[str, Any]:
    obs = factories.observation()
    if category is None:
        del obs["category"]
    else:
        obs["category"] = [{"coding": [{"system": category[0], "code": category[1]}]}]
    return obs


def condition(patient: str, clinical: str, category: str = "problem-list-item") -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "subject": {"reference": f"Patient/{patient}"},
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": clinical}]},
        "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": category}]}],
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]},
    }


def encounter(code: str) -> dict[str, Any]:
    return {"resourceType": "Encounter", "status": "finished", "class": {"system": ACT_CODE, "code": code}}


@pytest.fixture
def observations(client: TestClient) -> dict[str, str]:
    return {
        "vital": create(client, observation((OBS_CATEGORY, "vital-signs"))),
        "lab": create(client, observation((OBS_CATEGORY, "laboratory"))),
        "other-system": create(client, observation(("http://example.org/categories", "vital-signs"))),
        "none": create(client, observation(None)),
    }


def test_in_finds_codes_of_the_value_set_only_in_its_systems(
    client: TestClient, observations: dict[str, str]
) -> None:
    got = found(client, f"/Observation?category:in={OBS_CATEGORY_VS}")
    assert got == {observations["vital"], observations["lab"]}


def test_not_in_finds_the_rest_including_resources_without_the_element(
    client: TestClient, observations: dict[str, str]
) -> None:
    got = found(client, f"/Observation?category:not-in={OBS_CATEGORY_VS}")
    assert got == {observations["other-system"], observations["none"]}


def test_in_with_a_value_set_stored_on_the_server(client: TestClient, observations: dict[str, str]) -> None:
    url = "http://example.org/vs/lab-only"
    vs = {
        "resourceType": "ValueSet",
        "url": url,
        "status": "active",
        "compose": {"include": [{"system": OBS_CATEGORY, "concept": [{"code": "laboratory"}]}]},
    }
    create(client, vs)
    assert found(client, f"/Observation?category:in={url}") == {observations["lab"]}
    assert found(client, f"/Observation?category:not-in={url}") == {
        observations["vital"],
        observations["other-system"],
        observations["none"],
    }


def test_in_combines_with_other_criteria_and_post_search(
    client: TestClient, observations: dict[str, str]
) -> None:
    query = f"category:in={OBS_CATEGORY_VS}&category={OBS_CATEGORY}|laboratory"
    assert found(client, f"/Observation?{query}") == {observations["lab"]}
    r = client.post(
        "/Observation/_search",
        content=f"category:in={OBS_CATEGORY_VS}",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert {e["resource"]["id"] for e in r.json()["entry"]} == {observations["vital"], observations["lab"]}


@pytest.fixture
def conditions(client: TestClient) -> dict[str, str]:
    patient = create(client, factories.patient())
    return {
        code: create(
            client,
            condition(patient, code, "encounter-diagnosis" if code == "resolved" else "problem-list-item"),
        )
        for code in ("active", "recurrence", "relapse", "remission", "resolved")
    }


def test_below_finds_the_concept_and_what_it_subsumes(client: TestClient, conditions: dict[str, str]) -> None:
    got = found(client, f"/Condition?clinical-status:below={CLINICAL}|active")
    assert got == {conditions["active"], conditions["recurrence"], conditions["relapse"]}
    assert found(client, f"/Condition?clinical-status:below={CLINICAL}|remission") == {
        conditions["remission"]
    }


def test_above_finds_the_concept_and_what_subsumes_it(client: TestClient, conditions: dict[str, str]) -> None:
    got = found(client, f"/Condition?clinical-status:above={CLINICAL}|relapse")
    assert got == {conditions["active"], conditions["relapse"]}


def test_below_without_a_system_uses_the_shipped_systems_defining_the_code(
    client: TestClient, conditions: dict[str, str]
) -> None:
    got = found(client, "/Condition?clinical-status:below=inactive")
    assert got == {conditions["remission"], conditions["resolved"]}


def test_condition_category_in_a_shipped_value_set(client: TestClient, conditions: dict[str, str]) -> None:
    assert found(client, f"/Condition?category:in={CONDITION_CATEGORY_VS}") == set(conditions.values())
    assert found(client, f"/Condition?category:not-in={CONDITION_CATEGORY_VS}") == set()


def test_below_and_above_over_a_deep_hierarchy(client: TestClient) -> None:
    ids = {code: create(client, encounter(code)) for code in ("IMP", "ACUTE", "NONAC", "AMB", "EMER")}
    assert found(client, f"/Encounter?class:below={ACT_CODE}|IMP") == {ids["IMP"], ids["ACUTE"], ids["NONAC"]}
    assert found(client, f"/Encounter?class:below={ACT_CODE}|_ActEncounterCode") == set(ids.values())
    assert found(client, f"/Encounter?class:above={ACT_CODE}|ACUTE") == {ids["IMP"], ids["ACUTE"]}
    assert found(
        client, "/Encounter?class:in=http://terminology.hl7.org/ValueSet/v3-ActEncounterCode"
    ) == set(ids.values())


@pytest.mark.parametrize(
    ("query", "status", "named"),
    [
        (f"/Condition?code:in={SNOMED_VS}", 422, SNOMED_VS),
        (f"/Condition?code:not-in={SNOMED_VS}", 422, SNOMED_VS),
        ("/Observation?category:in=http://example.org/vs/unknown", 400, "http://example.org/vs/unknown"),
        ("/Observation?code:below=http://loinc.org|8867-4", 422, "http://loinc.org"),
        ("/Observation?code:above=http://snomed.info/sct|73211009", 422, "http://snomed.info/sct"),
        (f"/Condition?clinical-status:below={CLINICAL}|nope", 400, "nope"),
        ("/Condition?clinical-status:below=no-such-code-anywhere", 400, "no-such-code-anywhere"),
    ],
)
def test_what_cannot_be_evaluated_is_a_client_error_naming_it(
    client: TestClient, query: str, status: int, named: str
) -> None:
    r = client.get(query)
    assert r.status_code == status, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert named in outcome["issue"][0]["diagnostics"]
