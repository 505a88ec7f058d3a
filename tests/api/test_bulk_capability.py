"""The CapabilityStatement declares Bulk Data (https://hl7.org/fhir/uv/bulkdata/STU2/CapabilityStatement-bulk-data.html)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests import bulk_support

bulk_caller = bulk_support.bulk_caller  # fixtures
bulk_client = bulk_support.bulk_client
bulk_settings = bulk_support.bulk_settings


def test_the_capability_statement_instantiates_bulk_data_and_declares_the_exports(
    bulk_client: TestClient,
) -> None:
    """instantiates the bulk-data CapabilityStatement; system, Patient and Group $export declared (@1, @217, @220)."""
    statement = bulk_client.get("/metadata").json()
    assert "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data" in statement["instantiates"]
    (rest,) = statement["rest"]
    assert {
        "name": "export",
        "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
    } in rest["operation"]
    by_type = {r["type"]: r for r in rest["resource"]}
    definitions = {
        t: [o["definition"] for o in by_type[t].get("operation", []) if o["name"] == "export"]
        for t in ("Patient", "Group")
    }
    assert definitions == {
        "Patient": ["http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"],
        "Group": ["http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"],
    }
    assert {"read", "search-type"} <= {i["code"] for i in by_type["Group"]["interaction"]}  # @42
