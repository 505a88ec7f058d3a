"""FHIRPath Patch applied to resources (https://hl7.org/fhir/R4/fhirpatch.html): each operation type,
values as value[x] or parts, choice elements, and malformed patches refused with a location."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from fhir_server.errors import Invalid, Unprocessable
from fhir_server.interactions import fhirpath_patch
from tests import factories


def op(kind: str, path: str, **parts: Any) -> dict[str, Any]:
    found: list[dict[str, Any]] = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    for name in ("name", "index", "source", "destination"):
        if name in parts:
            key = "valueString" if name == "name" else "valueInteger"
            found.append({"name": name, key: parts[name]})
    if "value" in parts:
        found.append({"name": "value", **parts["value"]})
    return {"name": "operation", "part": found}


def patched(resource: dict[str, Any], *ops: dict[str, Any]) -> dict[str, Any]:
    body = {"resourceType": "Parameters", "parameter": list(ops)}
    return fhirpath_patch.apply(resource, resource["resourceType"], fhirpath_patch.operations(body))


def patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": "p",
        "identifier": [{"system": "urn:a", "value": "1"}, {"system": "urn:b", "value": "2"}],
        "name": [{"family": "Smith", "given": ["Anna", "Maria"], "_given": [None, {"id": "g2"}]}],
        "gender": "female",
        "birthDate": "1970-01-01",
        "_birthDate": {"extension": [{"url": "urn:x", "valueString": "approx"}]},
        "deceasedBoolean": False,
    }


def test_add_sets_a_missing_element_and_appends_to_a_repeating_one() -> None:
    p = patient()
    del p["gender"]
    out = patched(
        p,
        op("add", "Patient", name="gender", value={"valueCode": "male"}),
        op("add", "Patient", name="identifier", value={"part": [{"name": "value", "valueString": "3"}]}),
    )
    assert out["gender"] == "male"
    assert out["identifier"][-1] == {"value": "3"}
    assert p.get("gender") is None  # the input is not changed


def test_add_to_an_element_that_already_has_a_value_is_422() -> None:
    with pytest.raises(Unprocessable, match="replace"):
        patched(patient(), op("add", "Patient", name="gender", value={"valueCode": "male"}))


def test_a_complex_value_given_as_parts_is_shaped_by_the_definition() -> None:
    contact = {
        "part": [
            {"name": "name", "part": [{"name": "family", "valueString": "Doe"}]},
            {"name": "telecom", "part": [{"name": "system", "valueCode": "phone"}]},
        ]
    }
    out = patched(patient(), op("add", "Patient", name="contact", value=contact))
    # HumanName.family is single, ContactPoint telecom repeats, Patient.contact repeats
    assert out["contact"] == [{"name": {"family": "Doe"}, "telecom": [{"system": "phone"}]}]


def test_a_choice_element_named_by_its_stem_takes_the_type_of_its_value() -> None:
    obs = factories.observation("p")
    obs.pop("valueQuantity", None)
    component = {
        "part": [
            {"name": "code", "part": [{"name": "text", "valueString": "x"}]},
            {"name": "value", "valueQuantity": {"value": 1, "unit": "mmHg"}},
        ]
    }
    out = patched(
        obs,
        op("add", "Observation", name="value", value={"valueString": "high"}),
        op("add", "Observation", name="component", value=component),
    )
    assert out["valueString"] == "high"
    assert out["component"][-1] == {"code": {"text": "x"}, "valueQuantity": {"value": 1, "unit": "mmHg"}}
    swapped = patched(out, op("replace", "Observation.value", value={"valueInteger": 7}))
    assert swapped["valueInteger"] == 7 and "valueString" not in swapped


def test_replace_and_delete_find_their_element_with_where() -> None:
    out = patched(
        patient(),
        op("replace", "Patient.identifier.where(system='urn:b').value", value={"valueString": "22"}),
        op("delete", "Patient.identifier.where(system='urn:a')"),
    )
    assert out["identifier"] == [{"system": "urn:b", "value": "22"}]


def test_delete_takes_the_primitive_extensions_along() -> None:
    out = patched(patient(), op("delete", "Patient.birthDate"), op("delete", "Patient.name.given[0]"))
    assert "birthDate" not in out and "_birthDate" not in out
    assert out["name"][0]["given"] == ["Maria"] and out["name"][0]["_given"] == [{"id": "g2"}]


def test_delete_of_nothing_is_no_change_and_of_several_is_422() -> None:
    assert patched(patient(), op("delete", "Patient.address")) == patient()
    with pytest.raises(Unprocessable, match="2 elements"):
        patched(patient(), op("delete", "Patient.identifier"))


def test_insert_and_move_reorder_a_list() -> None:
    value = {"part": [{"name": "value", "valueString": "0"}]}
    out = patched(patient(), op("insert", "Patient.identifier", index=0, value=value))
    assert [i["value"] for i in out["identifier"]] == ["0", "1", "2"]
    moved = patched(out, op("move", "Patient.identifier", source=0, destination=2))
    assert [i["value"] for i in moved["identifier"]] == ["1", "2", "0"]
    with pytest.raises(Unprocessable, match="beyond"):
        patched(patient(), op("insert", "Patient.identifier", index=5, value=value))
    with pytest.raises(Unprocessable, match="not a repeating"):
        patched(patient(), op("insert", "Patient.gender", index=0, value={"valueCode": "male"}))


def test_first_last_and_index_select_one_item() -> None:
    out = patched(
        patient(),
        op("replace", "Patient.identifier.first().value", value={"valueString": "a"}),
        op("replace", "Patient.identifier.last().value", value={"valueString": "b"}),
        op("replace", "Patient.name[0].family", value={"valueString": "Jones"}),
    )
    assert [i["value"] for i in out["identifier"]] == ["a", "b"]
    assert out["name"][0]["family"] == "Jones"


@pytest.mark.parametrize(
    ("body", "error", "where"),
    [
        ({"resourceType": "Parameters"}, Invalid, "Parameters.parameter"),
        (
            {"resourceType": "Parameters", "parameter": [{"name": "x"}]},
            Invalid,
            "Parameters.parameter[0].name",
        ),
        (
            {"resourceType": "Parameters", "parameter": [op("upsert", "Patient")]},
            Invalid,
            "Parameters.parameter[0]",
        ),
        (
            {"resourceType": "Parameters", "parameter": [op("add", "Patient")]},
            Invalid,
            "Parameters.parameter[0].part",
        ),
        (
            {
                "resourceType": "Parameters",
                "parameter": [op("insert", "Patient.identifier", value={"valueString": "x"})],
            },
            Invalid,
            "Parameters.parameter[0].part",
        ),
    ],
)
def test_a_malformed_patch_is_400_naming_where(body: dict[str, Any], error: type, where: str) -> None:
    with pytest.raises(error) as caught:
        fhirpath_patch.operations(body)
    assert caught.value.expression == (where,)


@pytest.mark.parametrize(
    "path",
    ["Patient.name.given.substring(1)", "Patient.identifier.select(value)", "Patient.name[%x]", "Patient.(("],
)
def test_a_path_outside_the_supported_subset_is_refused_with_the_path(path: str) -> None:
    with pytest.raises((Unprocessable, Invalid)) as caught:
        patched(patient(), op("replace", path, value={"valueString": "x"}))
    assert caught.value.expression == (path,)


def test_the_resource_itself_cannot_be_deleted_or_replaced() -> None:
    for kind in ("delete", "replace"):
        with pytest.raises(Unprocessable, match="resource itself"):
            patched(patient(), op(kind, "Patient", value={"valueString": "x"}))


values = st.lists(st.text(alphabet="abc123", min_size=1, max_size=4), min_size=1, max_size=6)


@given(items=values, data=st.data())
def test_insert_then_move_match_the_same_list_operations_in_python(
    items: list[str], data: st.DataObject
) -> None:
    resource = {"resourceType": "Patient", "identifier": [{"value": v} for v in items]}
    index = data.draw(st.integers(0, len(items)))
    out = patched(
        resource,
        op(
            "insert",
            "Patient.identifier",
            index=index,
            value={"part": [{"name": "value", "valueString": "new"}]},
        ),
    )
    expected = list(items)
    expected.insert(index, "new")
    assert [i["value"] for i in out["identifier"]] == expected
    source = data.draw(st.integers(0, len(expected) - 1))
    destination = data.draw(st.integers(0, len(expected) - 1))
    moved = patched(out, op("move", "Patient.identifier", source=source, destination=destination))
    expected.insert(destination, expected.pop(source))
    assert [i["value"] for i in moved["identifier"]] == expected
    deleted = patched(moved, op("delete", f"Patient.identifier[{destination}]"))
    del expected[destination]
    assert [i["value"] for i in deleted.get("identifier", [])] == expected


# ---------------- over HTTP: PATCH with a Parameters body, conditional PATCH ----------------
FHIR_JSON = {"Content-Type": "application/fhir+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def _patient_id(client: TestClient, family: str, ident: str) -> str:
    body = factories.patient(family, identifier=[{"system": "urn:pid", "value": ident}])
    r = client.post("/Patient", json=body, headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _parameters(*ops: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(ops)}


def test_a_fhirpath_patch_over_http_makes_a_new_version(client: TestClient) -> None:
    rid = _patient_id(client, "Smith", "1")
    body = _parameters(op("replace", "Patient.gender", value={"valueCode": "male"}))
    r = client.patch(f"/Patient/{rid}", json=body, headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    assert r.json()["gender"] == "male" and r.json()["meta"]["versionId"] == "2"
    assert client.get(f"/Patient/{rid}").json()["gender"] == "male"


def test_a_fhirpath_patch_that_breaks_a_required_binding_is_422_and_stores_nothing(
    client: TestClient,
) -> None:
    rid = _patient_id(client, "Smith", "1")
    body = _parameters(op("replace", "Patient.gender", value={"valueCode": "x"}))
    r = client.patch(f"/Patient/{rid}", json=body, headers=FHIR_JSON)
    assert r.status_code == 422, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/Patient/{rid}").json()["meta"]["versionId"] == "1"


def test_conditional_patch_patches_the_one_match_404_for_none_412_for_several(client: TestClient) -> None:
    rid = _patient_id(client, "Smith", "1")
    _patient_id(client, "Jones", "2")
    _patient_id(client, "Jones", "3")
    ops = [{"op": "replace", "path": "/gender", "value": "male"}]
    one = client.patch("/Patient?identifier=urn:pid|1", json=ops, headers=JSON_PATCH)
    assert one.status_code == 200, one.text
    assert one.json()["id"] == rid and one.json()["gender"] == "male"
    none = client.patch("/Patient?identifier=urn:pid|9", json=ops, headers=JSON_PATCH)
    assert none.status_code == 404, none.text
    several = client.patch("/Patient?family=Jones", json=ops, headers=JSON_PATCH)
    assert several.status_code == 412, several.text
    assert client.patch("/Patient", json=ops, headers=JSON_PATCH).status_code == 400  # no criteria


def test_a_transaction_entry_may_be_a_conditional_fhirpath_patch(client: TestClient) -> None:
    rid = _patient_id(client, "Smith", "1")
    entry = {
        "resource": _parameters(op("add", "Patient", name="active", value={"valueBoolean": True})),
        "request": {"method": "PATCH", "url": "Patient?identifier=urn:pid|1"},
    }
    r = client.post(
        "/", json={"resourceType": "Bundle", "type": "transaction", "entry": [entry]}, headers=FHIR_JSON
    )
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["response"]["status"].startswith("200")
    assert client.get(f"/Patient/{rid}").json()["active"] is True


def test_a_fhirpath_patch_may_come_as_xml(client: TestClient) -> None:
    rid = _patient_id(client, "Smith", "1")
    body = (
        '<Parameters xmlns="http://hl7.org/fhir"><parameter><name value="operation"/>'
        '<part><name value="type"/><valueCode value="replace"/></part>'
        '<part><name value="path"/><valueString value="Patient.gender"/></part>'
        '<part><name value="value"/><valueCode value="male"/></part>'
        "</parameter></Parameters>"
    )
    r = client.patch(f"/Patient/{rid}", content=body, headers={"Content-Type": "application/fhir+xml"})
    assert r.status_code == 200, r.text
    assert client.get(f"/Patient/{rid}").json()["gender"] == "male"
