"""The R4 resource types R4B dropped (MedicinalProduct*, Substance*..., *EvidenceSynthesis) are served (issue 11).

They have no R4B model: the write path validates them from HL7's R4 StructureDefinitions alone,
their SearchParameters index them, and the CapabilityStatement, read, search, history,
`_elements` and `$export` treat them like any other type. Both databases.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from fhir_server import model, spec_package, validation
from fhir_server.errors import Invalid
from fhir_server.store.sql import Store
from tests.bulk_support import bulk_caller, bulk_client, bulk_settings, export  # noqa: F401 (fixtures)

FHIR = {"Content-Type": "application/fhir+json"}


def example(name: str) -> dict[str, Any]:
    return dict(orjson.loads((spec_package.ensure() / f"{name}.json").read_bytes()))


def without_references(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource without its top-level elements that refer to others (not stored in these tests)."""
    return {k: v for k, v in resource.items() if b'"reference"' not in orjson.dumps(v)}


def test_every_r4_only_type_is_served_and_no_r4b_only_type() -> None:
    r4 = {
        sd["type"]
        for _, sd in spec_package.resources("StructureDefinition-")
        if sd.get("kind") == "resource"
        and not sd.get("abstract")
        and sd.get("derivation") == "specialization"
    }
    assert model.resource_types() == r4 - {"Parameters"}
    assert model.resource_types() >= model.R4_ONLY
    assert not model.R4B_ONLY & model.resource_types()
    assert not any(model.has_r4b_model(t) for t in model.R4_ONLY)


def test_the_write_path_checks_them_from_the_r4_definitions() -> None:
    good = example("MedicinalProduct-example")
    validation.validate(good)
    validation.validate(good, r4b_models=True)  # no R4B model: the validator alone, no crash
    for change, where in (
        ({"nope": 1}, "MedicinalProduct.nope"),  # unknown element
        ({"name": [{"namePart": [{"part": "x"}]}]}, "MedicinalProduct.name[0].productName"),  # min 1
        (
            {"combinedPharmaceuticalDoseForm": [{"text": "a"}]},
            "MedicinalProduct.combinedPharmaceuticalDoseForm",
        ),
    ):
        bad = {**copy.deepcopy(good), **change}
        with pytest.raises(Invalid) as caught:
            validation.validate(bad)
        assert any(where in i.expression for i in caught.value.issues), caught.value.issues
    nucleic = {"resourceType": "SubstanceNucleicAcid", "numberOfSubunits": "two"}
    with pytest.raises(Invalid):
        validation.validate(nucleic)  # an integer given as a string


def test_read_search_history_and_elements(client: TestClient) -> None:
    product = without_references(example("MedicinalProduct-example"))
    assert client.put("/MedicinalProduct/example", json=product, headers=FHIR).status_code == 201
    bad = {**product, "id": "bad", "name": [{"namePart": [{"part": "x"}]}]}
    r = client.put("/MedicinalProduct/bad", json=bad, headers=FHIR)
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    assert client.get("/MedicinalProduct/bad").status_code == 404
    back = client.get("/MedicinalProduct/example").json()
    assert back["name"] == product["name"]
    found = client.get("/MedicinalProduct", params={"name": "Equilidem"}).json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == ["example"]
    assert client.get("/MedicinalProduct", params={"name": "Aspirin"}).json().get("entry", []) == []
    ident = product["identifier"][0]
    found = client.get(
        "/MedicinalProduct", params={"identifier": f"{ident['system']}|{ident['value']}"}
    ).json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == ["example"]
    product["name"][0]["productName"] = "Equilidem 5 mg"
    assert client.put("/MedicinalProduct/example", json=product, headers=FHIR).status_code == 200
    history = client.get("/MedicinalProduct/example/_history").json()
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    only = client.get("/MedicinalProduct/example", params={"_elements": "identifier"}).json()
    # kept: what was asked and the mandatory elements (name is 1..* in R4); dropped: the rest
    assert "identifier" in only and "name" in only and "productClassification" not in only
    summary = client.get("/MedicinalProduct/example", params={"_summary": "true"}).json()
    assert "name" in summary and "text" not in summary
    nucleic = {"resourceType": "SubstanceNucleicAcid", "id": "n1", "numberOfSubunits": 2}
    assert client.put("/SubstanceNucleicAcid/n1", json=nucleic, headers=FHIR).status_code == 201
    assert client.get("/SubstanceNucleicAcid", params={"_id": "n1"}).json()["total"] == 1


def test_the_capability_statement_lists_them(client: TestClient) -> None:
    rest = client.get("/metadata").json()["rest"][0]
    by_type = {r["type"]: r for r in rest["resource"]}
    assert set(by_type) >= model.R4_ONLY
    assert not model.R4B_ONLY & set(by_type)
    assert "name" in {p["name"] for p in by_type["MedicinalProduct"].get("searchParam", [])}


def test_export_includes_them(bulk_client: TestClient, store: Store) -> None:  # noqa: F811
    with store.write() as tx:
        tx.create(example("SubstanceSpecification-example"), "example")
    manifest = export(bulk_client, params={"_type": "SubstanceSpecification"})
    (item,) = manifest["output"]
    assert item["type"] == "SubstanceSpecification" and item["count"] == 1
    rows = bulk_client.get(item["url"], headers={"Accept": "application/fhir+ndjson"}).content.splitlines()
    assert orjson.loads(rows[0])["id"] == "example"
