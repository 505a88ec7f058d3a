"""The CapabilityStatement states exactly what the server does (https://hl7.org/fhir/R4/capabilitystatement.html)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from fhir_server import model
from fhir_server.search import query


def test_every_stored_type_is_listed_with_its_interactions(client: TestClient) -> None:
    cs = client.get("/metadata").json()
    listed = {r["type"]: r for r in cs["rest"][0]["resource"]}
    assert set(listed) == set(model.resource_types())
    codes = {i["code"] for i in listed["Observation"]["interaction"]}
    assert codes == {
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "create",
        "search-type",
        "history-type",
    }
    assert {i["code"] for i in cs["rest"][0]["interaction"]} >= {"transaction", "batch", "history-system"}


def test_every_listed_search_parameter_is_accepted_by_the_search_parser(client: TestClient) -> None:
    cs = client.get("/metadata").json()
    checked = 0
    for resource in cs["rest"][0]["resource"]:
        for param in resource.get("searchParam", []):
            # :missing applies to every parameter type; an unsupported one would raise (400).
            if param["name"] not in ("_id", "_lastUpdated"):
                query.parse(resource["type"], [(f"{param['name']}:missing", "true")], lenient=False)
            checked += 1
    assert checked > 2000


def test_search_parameters_of_unsupported_types_are_not_listed(client: TestClient) -> None:
    cs = client.get("/metadata").json()
    location = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Location")
    assert "near" not in {p["name"] for p in location["searchParam"]}
