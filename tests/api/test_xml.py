"""FHIR XML over HTTP (https://hl7.org/fhir/R4/http.html#mime-type, https://hl7.org/fhir/R4/xml.html):
every interaction reads and writes application/fhir+xml (Content-Type, Accept, _format), errors are
OperationOutcomes in XML, and a patient's token reaches only its own data in XML as in JSON."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from fhir_server.operations import definitions
from fhir_server.store import tables
from fhir_server.store.sql import Store
from fhir_server.xml_format import parse, serialise
from tests import factories
from tests.api.test_bulk_isolation import data, operator, patient_token, token
from tests.bulk_support import http, settings

__all__ = ["data", "http", "settings"]  # fixtures of the isolation tests

XML = {"Content-Type": "application/fhir+xml", "Accept": "application/fhir+xml"}


def xml(resource: dict[str, Any]) -> bytes:
    return serialise(resource)


def body(response: Any) -> dict[str, Any]:
    assert response.headers["content-type"].startswith(("application/fhir+xml", "application/xml"))
    return parse(response.content)


def test_create_read_vread_update_history_and_search_in_xml(client: TestClient) -> None:
    created = client.post("/Patient", content=xml(factories.patient(family="Xml")), headers=XML)
    assert created.status_code == 201, created.text
    patient = body(created)
    rid = patient["id"]
    assert patient["name"] == [{"family": "Xml", "given": ["Anna"]}]
    as_json = client.get(f"/Patient/{rid}").json()  # stored once, served in either format
    assert as_json == patient
    assert body(client.get(f"/Patient/{rid}", headers={"Accept": "application/fhir+xml"})) == as_json
    assert body(client.get(f"/Patient/{rid}/_history/1?_format=xml")) == as_json
    changed = {**as_json, "gender": "male"}
    updated = client.put(f"/Patient/{rid}", content=xml(changed), headers=XML)
    assert updated.status_code == 200 and body(updated)["gender"] == "male"
    history = body(client.get(f"/Patient/{rid}/_history?_format=xml"))
    assert history["resourceType"] == "Bundle" and history["type"] == "history"
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    found = body(client.get("/Patient?family=Xml&_format=application/xml"))
    assert found["type"] == "searchset" and found["entry"][0]["resource"]["gender"] == "male"
    assert (
        client.get("/Patient?_format=application/xml").headers["content-type"].startswith("application/xml")
    )


def test_format_negotiation(client: TestClient) -> None:
    def kind(**headers: str) -> str:
        return client.get("/metadata", headers=headers).headers["content-type"].split(";")[0]

    assert kind() == "application/fhir+json"
    assert kind(Accept="application/fhir+xml") == "application/fhir+xml"
    assert kind(Accept="text/xml") == "application/fhir+xml"
    assert kind(Accept="application/fhir+json;q=0.5, application/fhir+xml") == "application/fhir+xml"
    assert kind(Accept="application/fhir+xml;q=0.5, application/fhir+json") == "application/fhir+json"
    assert kind(Accept="text/html, */*;q=0.1") == "application/fhir+json"
    assert kind(Accept="application/json") == "application/json"
    pretty = client.get("/metadata?_format=xml&_pretty=true")
    assert b"\n  <" in pretty.content and body(pretty)["resourceType"] == "CapabilityStatement"
    # a body sent in XML without Accept is answered in XML
    answered = client.post(
        "/Patient", content=xml(factories.patient()), headers={"Content-Type": "application/xml"}
    )
    assert answered.headers["content-type"].startswith("application/fhir+xml")


def test_capability_statement_advertises_xml(client: TestClient) -> None:
    statement = body(client.get("/metadata", headers={"Accept": "application/fhir+xml"}))
    assert {"application/fhir+xml", "application/fhir+json"} <= set(statement["format"])


def test_transaction_and_batch_in_xml(client: TestClient) -> None:
    bundle = factories.transaction(
        factories.post_entry(factories.patient(family="Tx"), "urn:uuid:11111111-1111-1111-1111-111111111111"),
        factories.post_entry(
            factories.observation(
                None, subject={"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"}
            )
        ),
    )
    answer = client.post("/", content=xml(bundle), headers=XML)
    assert answer.status_code == 200, answer.text
    response = body(answer)
    assert response["type"] == "transaction-response"
    assert [e["response"]["status"][:3] for e in response["entry"]] == ["201", "201"]
    obs_id = response["entry"][1]["response"]["location"].split("/")[1]
    subject = client.get(f"/Observation/{obs_id}").json()["subject"]["reference"]
    assert subject == response["entry"][0]["response"]["location"].split("/_history")[0]
    batch = {**bundle, "type": "batch"}
    answered = body(client.post("/", content=xml(batch), headers=XML))
    assert answered["type"] == "batch-response"


def test_errors_are_operation_outcomes_in_xml(client: TestClient, store: Store) -> None:
    missing = client.get("/Patient/nope", headers={"Accept": "application/fhir+xml"})
    assert missing.status_code == 404 and body(missing)["resourceType"] == "OperationOutcome"
    unknown = client.post(
        "/Patient",
        content=b'<Patient xmlns="http://hl7.org/fhir"><colour value="red"/></Patient>',
        headers=XML,
    )
    assert unknown.status_code == 400
    issue = body(unknown)["issue"][0]
    assert issue["expression"] == ["Patient.colour"] and "line 1" in issue["diagnostics"]
    invalid = client.post(  # well-formed XML, but an invalid resource: the validator's 400
        "/Patient", content=b'<Patient xmlns="http://hl7.org/fhir"><gender value="x"/></Patient>', headers=XML
    )
    assert invalid.status_code == 400 and body(invalid)["issue"][0]["expression"] == ["Patient.gender"]
    assert client.get("/Patient?_format=turtle").status_code == 406


@pytest.mark.parametrize(
    "hostile",
    [
        b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<Patient xmlns="http://hl7.org/fhir"><name><family value="&x;"/></name></Patient>',
        b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><Patient xmlns="http://hl7.org/fhir"><name><family value="&c;"/></name></Patient>',
        b'<Patient xmlns="http://hl7.org/fhir">'
        + b"<extension>" * 300
        + b"</extension>" * 300
        + b"</Patient>",
        b'<Patient xmlns="http://hl7.org/fhir"><name><family value="unclosed"></name></Patient>',
        b"\xff\xfe<\x00P\x00/\x00>\x00",
    ],
)
def test_hostile_xml_is_a_400_and_writes_nothing(client: TestClient, store: Store, hostile: bytes) -> None:
    before = _count(store)
    for response in (
        client.post("/Patient", content=hostile, headers=XML),
        client.put("/Patient/x", content=hostile, headers=XML),
        client.post("/", content=hostile, headers=XML),
    ):
        assert response.status_code == 400, response.text
        assert body(response)["resourceType"] == "OperationOutcome"
        assert b"root:" not in response.content
    assert _count(store) == before


def test_an_xml_body_over_the_size_limit_is_413(client: TestClient) -> None:
    limit = client.app.state.settings.max_body_bytes  # type: ignore[attr-defined]
    big = b'<Patient xmlns="http://hl7.org/fhir">' + b"<!-- -->" * (limit // 8 + 1) + b"</Patient>"
    assert client.post("/Patient", content=big, headers=XML).status_code == 413


def test_operation_answers_in_xml(client: TestClient) -> None:
    outcome = client.post("/Patient/$validate", content=xml(factories.patient()), headers=XML)
    assert outcome.status_code == 200 and body(outcome)["resourceType"] == "OperationOutcome"


def test_summary_and_elements_in_xml(client: TestClient) -> None:
    rid = client.post("/Patient", json=factories.patient()).json()["id"]
    subset = body(client.get(f"/Patient/{rid}?_elements=gender&_format=xml"))
    assert subset["gender"] == "female" and "name" not in subset
    assert subset["meta"]["tag"][-1]["code"] == "SUBSETTED"


def _count(store: Store) -> int:
    with store.read() as tx:
        return int(tx.conn.execute(select(func.count()).select_from(tables.resource)).scalar_one())


# ---------------------------------------------------------------- isolation


def test_patient_tokens_reach_only_their_own_data_in_xml(http: TestClient, data: None) -> None:
    """Two patients, each a user of the same client, and the operator: XML changes nothing."""
    ann = {**patient_token(http, "A", 1), **XML}
    bob = {**patient_token(http, "B", 2), **XML}
    for headers, own, other in ((ann, "A", "B"), (bob, "B", "A")):
        assert body(http.get(f"/Patient/{own}", headers=headers))["id"] == own
        hidden = http.get(f"/Patient/{other}", headers=headers)
        assert hidden.status_code == 404 and body(hidden)["resourceType"] == "OperationOutcome"
        found = body(http.get("/Observation", headers=headers))
        assert {e["resource"]["subject"]["reference"] for e in found.get("entry", [])} == {f"Patient/{own}"}
        history = body(http.get("/Observation/_history", headers=headers))
        assert {e["resource"]["subject"]["reference"] for e in history.get("entry", [])} == {f"Patient/{own}"}
        written = http.post("/Observation", content=xml(factories.observation(other)), headers=headers)
        assert written.status_code == 403 and body(written)["resourceType"] == "OperationOutcome"
        bundle = factories.transaction(factories.post_entry(factories.observation(other)))
        assert http.post("/", content=xml(bundle), headers=headers).status_code == 403
    reader = {**operator(http), **XML}
    everyone = body(http.get("/Observation", headers=reader))
    assert {e["resource"]["subject"]["reference"] for e in everyone["entry"]} == {"Patient/A", "Patient/B"}
    no_scope = {**token(http, "patient/Patient.rs", patient="A"), **XML}
    refused = http.get("/Observation", headers=no_scope)
    assert refused.status_code == 403 and body(refused)["resourceType"] == "OperationOutcome"


def test_clinical_and_terminology_operations_and_definitions_answer_in_xml(client: TestClient) -> None:
    pid = client.post("/Patient", json=factories.patient()).json()["id"]
    client.post("/Observation", json=factories.observation(pid, value=70.25))
    client.post("/Observation", json=factories.observation(pid, value=80))
    everything = body(client.get(f"/Patient/{pid}/$everything?_format=xml"))
    assert {e["resource"]["resourceType"] for e in everything["entry"]} == {"Patient", "Observation"}
    lastn = body(client.get(f"/Observation/$lastn?patient={pid}&max=1&_format=xml"))
    assert len(lastn["entry"]) == 1
    stats = client.get(
        "/Observation/$stats",
        params={
            "subject": f"Patient/{pid}",
            "code": "8867-4",
            "system": "http://loinc.org",
            "statistic": "average,maximum",
            "_format": "xml",
        },
    )
    assert stats.status_code == 200, stats.text
    assert body(stats) == client.get(stats.url.path, params={**stats.url.params, "_format": "json"}).json()
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "url", "valueUri": "http://hl7.org/fhir/ValueSet/administrative-gender"}],
    }
    expanded = client.post("/ValueSet/$expand", content=xml(parameters), headers=XML)
    assert expanded.status_code == 200, expanded.text
    codes = {c["code"] for c in body(expanded)["expansion"]["contains"]}
    assert codes == {"male", "female", "other", "unknown"}
    names = definitions.NAMES  # every OperationDefinition of this server's own
    assert names
    for name in names:
        definition = client.get(f"/OperationDefinition/{name}", headers={"Accept": "application/fhir+xml"})
        assert body(definition)["resourceType"] == "OperationDefinition", name
