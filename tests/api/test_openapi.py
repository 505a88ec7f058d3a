"""`/openapi.json` and `/docs` (issue 13): the OpenAPI description is made from the CapabilityStatement,
so each advertised interaction, search parameter, operation and OAuth endpoint is in it, and each path
it describes is routed by the server (tests/api/test_fuzz.py drives them all with schemathesis)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.api import openapi
from fhir_server.settings import Settings

METHOD = {
    "read": ("/{t}/{{id}}", "get"),
    "vread": ("/{t}/{{id}}/_history/{{vid}}", "get"),
    "update": ("/{t}/{{id}}", "put"),
    "patch": ("/{t}/{{id}}", "patch"),
    "delete": ("/{t}/{{id}}", "delete"),
    "history-instance": ("/{t}/{{id}}/_history", "get"),
    "history-type": ("/{t}/_history", "get"),
    "create": ("/{t}", "post"),
    "search-type": ("/{t}", "get"),
}


@pytest.fixture
def described(client: TestClient) -> tuple[dict[str, Any], dict[str, Any]]:
    r = client.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    return r.json(), client.get("/metadata").json()


def test_every_advertised_interaction_and_search_parameter_is_described(
    described: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    doc, statement = described
    assert doc["openapi"] == "3.0.3" and doc["servers"] == [{"url": "http://testserver"}]
    rest = statement["rest"][0]
    for resource in rest["resource"]:
        t = resource["type"]
        for interaction in resource["interaction"]:
            path, method = METHOD[interaction["code"]]
            assert method in doc["paths"][path.format(t=t)], (t, interaction["code"])
        described_params = {p["name"] for p in doc["paths"][f"/{t}"]["get"]["parameters"]}
        assert {p["name"] for p in resource["searchParam"]} <= described_params
        assert {"_count", "_sort", "_include"} <= described_params
        for op in resource.get("operation", []):
            assert any(p.startswith(f"/{t}/") and p.endswith(f"${op['name']}") for p in doc["paths"]), op
    for op in rest["operation"]:
        assert f"/${op['name']}" in doc["paths"]
    assert {"get", "post"} <= set(doc["paths"]["/"])  # search-system, transaction/batch
    assert doc["paths"]["/metadata"]["get"]["security"] == []  # public, like the statement


def test_security_comes_from_the_smart_oauth_uris(described: tuple[dict[str, Any], dict[str, Any]]) -> None:
    doc, statement = described
    uris = {e["url"]: e["valueUri"] for e in statement["rest"][0]["security"]["extension"][0]["extension"]}
    smart = doc["components"]["securitySchemes"]["smart"]["flows"]
    assert smart["authorizationCode"]["authorizationUrl"] == uris["authorize"]
    assert smart["clientCredentials"]["tokenUrl"] == uris["token"]
    assert {"smart": []} in doc["security"] and {"bearer": []} in doc["security"]


def test_every_described_path_is_routed(
    client: TestClient, described: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    doc, _ = described
    for path, item in doc["paths"].items():
        if not (
            path.startswith(("/Patient", "/Group", "/ValueSet", "/CodeSystem", "/$", "/_")) or path == "/"
        ):
            continue
        url = path.replace("{id}", "nosuch").replace("{vid}", "1")
        for method in item:
            if method == "parameters":
                continue
            r = client.request(method.upper(), url)
            assert "No such path" not in r.text and r.status_code != 405, (method, path, r.text[:200])


def test_an_operation_of_unknown_levels_is_an_error_not_a_missing_path() -> None:
    with pytest.raises(LookupError):
        openapi._levels("http://example.org/OperationDefinition/Patient-everything", "http://testserver")


def test_swagger_ui_loads_the_served_description(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "'/openapi.json'" in r.text or '"/openapi.json"' in r.text


def test_under_a_base_path_the_description_names_it(store: Any, tmp_path: Any) -> None:
    from fhir_server.app import create_app

    settings = Settings(base_url="http://testserver/fhir", allow_anonymous=True, data_dir=tmp_path)
    with TestClient(create_app(settings, store=store), base_url="http://testserver/fhir") as c:
        assert c.get("/openapi.json").json()["servers"] == [{"url": "http://testserver/fhir"}]
        assert "/fhir/openapi.json" in c.get("/docs").text
