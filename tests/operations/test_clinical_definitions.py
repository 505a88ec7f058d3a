"""$everything, $lastn and $stats are declared in the CapabilityStatement (https://hl7.org/fhir/R4/capabilitystatement.html);
$stats points at our OperationDefinition with the series inputs, served without a token and valid R4."""

from __future__ import annotations

from fastapi.testclient import TestClient

from fhir_server import model


def test_declared_in_the_capability_statement(client: TestClient) -> None:
    rest = client.get("/metadata").json()["rest"][0]
    ops = {
        r["type"]: {op["name"]: op["definition"] for op in r.get("operation", [])} for r in rest["resource"]
    }
    assert ops["Patient"]["everything"] == "http://hl7.org/fhir/OperationDefinition/Patient-everything"
    assert ops["Observation"]["lastn"] == "http://hl7.org/fhir/OperationDefinition/Observation-lastn"
    stats = ops["Observation"]["stats"]
    response = client.get(stats)
    assert response.status_code == 200
    definition = response.json()
    model.validate(definition)
    assert (definition["url"], definition["code"]) == (stats, "stats")
    assert definition["base"] == "http://hl7.org/fhir/OperationDefinition/Observation-stats"
    assert {"interval", "timezone"} <= {p["name"] for p in definition["parameter"]}


def test_the_series_definition_needs_no_token(smart_client: TestClient) -> None:
    assert smart_client.get("/OperationDefinition/Observation-stats-series").status_code == 200
