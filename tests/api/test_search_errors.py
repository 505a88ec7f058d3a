"""Bad search input is a 400 OperationOutcome naming the parameter, never a 500 (https://hl7.org/fhir/R4/search.html#errors)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("Observation?date=2024-13-45", "date"),
        ("Observation?date=xx2024", "date"),
        ("Observation?value-quantity=abc|http://unitsofmeasure.org|kg", "value-quantity"),
        ("Observation?value-quantity=gt", "value-quantity"),
        ("RiskAssessment?probability=high", "probability"),
        ("Patient?birthdate=yesterday", "birthdate"),
        ("Patient?favourite-colour=blue", "favourite-colour"),
        ("Patient?name:sounds-like=smith", "name:sounds-like"),
        ("Observation?subject:Patient.shoe-size=42", "subject:Patient.shoe-size"),
        ("Patient?_count=-1", "_count"),
        ("Patient?_count=many", "_count"),
        ("Patient?_sort=shoe-size", "_sort"),
        ("Patient?_include=Patient:nothing", "_include"),
        ("Patient?_summary=maybe", "_summary"),
        ("Patient?_total=lots", "_total"),
        ("Patient?_has:Observation:patient:shoe-size=1", "_has:Observation:patient:shoe-size"),
        ("Patient?_cursor=not-a-cursor", "_cursor"),
    ],
)
def test_malformed_search_is_400_naming_the_parameter(client: TestClient, query: str, named: str) -> None:
    r = client.get("/" + query)
    assert r.status_code == 400, r.text
    issue = r.json()["issue"][0]
    assert r.json()["resourceType"] == "OperationOutcome"
    assert named in issue.get("expression", []) or named in issue["diagnostics"], issue


def test_unknown_parameter_is_ignored_and_left_out_of_self_link_when_lenient(client: TestClient) -> None:
    r = client.get("/Patient?favourite-colour=blue&gender=female", headers={"Prefer": "handling=lenient"})
    assert r.status_code == 200
    self_link = next(link["url"] for link in r.json()["link"] if link["relation"] == "self")
    assert "gender=female" in self_link and "favourite-colour" not in self_link


def test_unknown_type_in_system_search_is_400(client: TestClient) -> None:
    assert client.get("/?_type=Spaceship").status_code == 400
