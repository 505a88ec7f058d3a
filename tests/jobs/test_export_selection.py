"""What an export selects (https://hl7.org/fhir/uv/bulkdata/STU2/export.html#query-parameters):
the Patient compartment for Patient and Group exports, `patient`, `_type`, `_typeFilter`,
`_elements`, Provenance, and only what the client's scopes allow.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.store.sql import Store
from tests import factories
from tests.bulk_support import Caller, export, lines, put, system_client

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}


@pytest.fixture
def world(store: Store) -> dict[str, Any]:
    """Patients a (in group g), b and c; an Observation each (a's is a lab result); an Organization;
    a Provenance targeting a's Observation, one targeting the Organization."""
    a, b, c = put(store, factories.patient("A"), factories.patient("B"), factories.patient("C"))
    lab = {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}
        ]
    }
    oa, ob, oc = put(
        store,
        factories.observation(a, category=[lab]),
        factories.observation(b, value=80),
        factories.observation(c),
    )
    (org,) = put(store, {"resourceType": "Organization", "name": "Clinic"})
    group = {
        "resourceType": "Group",
        "id": "g",
        "type": "person",
        "actual": True,
        "member": [{"entity": {"reference": f"Patient/{a}"}}],
    }
    put(store, group)
    agent = [{"who": {"reference": f"Organization/{org}"}}]
    prov_a, prov_org = put(
        store,
        {
            "resourceType": "Provenance",
            "target": [{"reference": f"Observation/{oa}"}],
            "recorded": "2024-01-01T00:00:00Z",
            "agent": agent,
        },
        {
            "resourceType": "Provenance",
            "target": [{"reference": f"Organization/{org}"}],
            "recorded": "2024-01-01T00:00:00Z",
            "agent": agent,
        },
    )
    return {
        "a": a,
        "b": b,
        "c": c,
        "oa": oa,
        "ob": ob,
        "oc": oc,
        "org": org,
        "prov_a": prov_a,
        "prov_org": prov_org,
    }


def ids(client: TestClient, manifest: dict[str, Any]) -> dict[str, set[str]]:
    return {rtype: {r["id"] for r in rows} for rtype, rows in lines(client, manifest).items()}


def test_system_export_returns_every_type(bulk_client: TestClient, world: dict[str, Any]) -> None:
    """No `_type`: every resource the client may read (@63, @111, @112)."""
    got = ids(bulk_client, export(bulk_client))
    assert got["Patient"] == {world["a"], world["b"], world["c"]}
    assert got["Organization"] == {world["org"]}
    assert got["Provenance"] == {world["prov_a"], world["prov_org"]}
    assert "Group" in got


def test_type_filters_the_resource_types(bulk_client: TestClient, world: dict[str, Any]) -> None:
    """`_type`: only those types (@62)."""
    assert set(ids(bulk_client, export(bulk_client, params={"_type": "Observation,Organization"}))) == {
        "Observation",
        "Organization",
    }


def test_patient_export_follows_the_patient_compartment(
    bulk_client: TestClient, world: dict[str, Any]
) -> None:
    """Patient export: patients and their compartments, not the Organization; the Provenance of a
    compartment resource is included (@33, @35, @65, @66, @109, @110)."""
    got = ids(bulk_client, export(bulk_client, "Patient/$export"))
    assert got["Patient"] == {world["a"], world["b"], world["c"]}
    assert got["Observation"] == {world["oa"], world["ob"], world["oc"]}
    assert "Organization" not in got
    assert got["Provenance"] == {world["prov_a"]}


def test_group_export_covers_the_members_only(bulk_client: TestClient, world: dict[str, Any]) -> None:
    """Group export: the members' compartments (Group.member.entity) (@34, @36, @250)."""
    got = ids(bulk_client, export(bulk_client, "Group/g/$export"))
    assert got["Patient"] == {world["a"]}
    assert got["Observation"] == {world["oa"]}
    assert got["Provenance"] == {world["prov_a"]}


def test_the_patient_parameter_limits_the_compartments(
    bulk_client: TestClient, world: dict[str, Any]
) -> None:
    """POST `patient`: no resources of other patients' compartments (@85)."""
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": f"Patient/{world['b']}"}},
            {"name": "_type", "valueString": "Patient,Observation"},
        ],
    }
    response = bulk_client.post("/Patient/$export", json=body, headers={"Prefer": "respond-async"})
    assert response.status_code == 202
    from tests.bulk_support import wait_done

    got = ids(bulk_client, wait_done(bulk_client, response.headers["content-location"]).json())
    assert got == {"Patient": {world["b"]}, "Observation": {world["ob"]}}


def test_type_filter_searches_are_ored_per_type(bulk_client: TestClient, world: dict[str, Any]) -> None:
    """`_typeFilter`: a resource of a filtered type is exported when it matches any of its type's
    searches; other types are not filtered (@101, @103)."""
    params = [
        ("_type", "Patient,Observation"),
        ("_typeFilter", "Observation?category=laboratory,Observation?value-quantity=80"),
    ]
    got = ids(bulk_client, export(bulk_client, params=params))
    assert got["Observation"] == {world["oa"], world["ob"]}
    assert got["Patient"] == {world["a"], world["b"], world["c"]}


def test_elements_keeps_listed_and_mandatory_elements_and_tags_subsetted(
    bulk_client: TestClient, world: dict[str, Any]
) -> None:
    """`_elements`: listed (typed or not) and mandatory root elements only, tagged SUBSETTED (@73, @75-@80)."""
    manifest = export(
        bulk_client, params={"_type": "Patient,Observation", "_elements": "Patient.gender,subject"}
    )
    rows = lines(bulk_client, manifest)
    for patient in rows["Patient"]:
        assert set(patient) == {"resourceType", "id", "meta", "gender"}
        assert SUBSETTED in patient["meta"]["tag"]
    for obs in rows["Observation"]:
        assert set(obs) == {"resourceType", "id", "meta", "status", "code", "subject"}


def test_nested_elements_are_400_or_ignored_when_lenient(
    bulk_client: TestClient, world: dict[str, Any]
) -> None:
    """Only root elements are permitted in `_elements` (@77, @81, @82)."""
    assert bulk_client.get("/$export", params={"_elements": "Patient.name.given"}).status_code == 400
    manifest = export(
        bulk_client,
        params={"_type": "Patient", "_elements": "Patient.name.given"},
        headers={"Prefer": "handling=lenient"},
    )
    assert all("name" in p for p in lines(bulk_client, manifest)["Patient"])


def test_exports_are_limited_to_the_types_the_scopes_allow(
    bulk_client: TestClient, bulk_caller: Caller, world: dict[str, Any]
) -> None:
    """The data returned is limited to what the client is authorized for; asking for a type outside
    the scopes is 403 (@9, @27, @226, @5)."""
    bulk_caller.principal = system_client(scope="system/Patient.rs system/Observation.rs")
    assert set(ids(bulk_client, export(bulk_client))) == {"Patient", "Observation"}
    response = bulk_client.get("/$export", params={"_type": "Organization"})
    assert response.status_code == 403


def test_granular_scopes_restrict_the_resources(
    bulk_client: TestClient, bulk_caller: Caller, world: dict[str, Any]
) -> None:
    """A granular scope (`system/Observation.rs?category=...`) limits the exported Observations (@9)."""
    bulk_caller.principal = system_client(
        scope="system/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
    )
    assert ids(bulk_client, export(bulk_client)) == {"Observation": {world["oa"]}}


def test_relevant_provenance_is_added_to_a_typed_export(
    bulk_client: TestClient, world: dict[str, Any]
) -> None:
    """includeAssociatedData=RelevantProvenanceResources adds the Provenance of the exported resources (@92, @99)."""
    manifest = export(
        bulk_client, params={"_type": "Observation", "includeAssociatedData": "RelevantProvenanceResources"}
    )
    got = ids(bulk_client, manifest)
    assert got["Provenance"] == {world["prov_a"]}
    manifest = export(
        bulk_client,
        "Group/g/$export",
        params={"_type": "Patient", "includeAssociatedData": "RelevantProvenanceResources"},
    )
    assert "Provenance" not in ids(bulk_client, manifest)
