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
            if param["name"] not in ("_id", "_lastUpdated", "_list"):  # _list: see test_registry
                query.parse(resource["type"], [(f"{param['name']}:missing", "true")], lenient=False)
            checked += 1
    assert checked > 2000


def test_search_parameters_of_unsupported_types_are_not_listed(client: TestClient) -> None:
    cs = client.get("/metadata").json()
    location = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Location")
    assert "near" not in {p["name"] for p in location["searchParam"]}


def test_the_servers_own_operations_are_declared_with_definitions_it_serves(client: TestClient) -> None:
    """`$import` and `$ingest` (system), `$ingest` (Patient instance) point at OperationDefinitions that
    GET returns, valid R4, with that canonical url and the operation's code."""
    rest = client.get("/metadata").json()["rest"][0]
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    declared = [(op["name"], op["definition"]) for op in rest["operation"] + patient["operation"]]
    own = [(name, url) for name, url in declared if name in ("import", "ingest")]
    assert sorted(name for name, _ in own) == ["import", "ingest", "ingest"]
    for name, url in own:
        response = client.get(url)
        assert response.status_code == 200, response.text
        definition = response.json()
        model.validate(definition)
        assert (definition["url"], definition["code"]) == (url, name)
    assert client.get("/OperationDefinition/not-ours").status_code == 404


def test_the_operation_definitions_need_no_token_like_the_capability_statement(
    smart_client: TestClient,
) -> None:
    assert smart_client.get("/metadata").status_code == 200
    assert smart_client.get("/OperationDefinition/ingest").status_code == 200
    assert smart_client.get("/OperationDefinition/import").status_code == 200
    assert smart_client.get("/Observation").status_code == 401
