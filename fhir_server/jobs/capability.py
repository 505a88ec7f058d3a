"""What the CapabilityStatement declares for Bulk Data (https://hl7.org/fhir/uv/bulkdata/STU2/CapabilityStatement-bulk-data.html)."""

from __future__ import annotations

from typing import Any

INSTANTIATES = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
_DEFINITIONS = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition"


def system_operations() -> list[dict[str, Any]]:
    """`rest.operation`: system-level export."""
    return [{"name": "export", "definition": f"{_DEFINITIONS}/export"}]


def type_operations(res_type: str) -> list[dict[str, Any]]:
    """`rest.resource.operation`: Patient- and Group-level export."""
    if res_type == "Patient":
        return [{"name": "export", "definition": f"{_DEFINITIONS}/patient-export"}]
    if res_type == "Group":
        return [{"name": "export", "definition": f"{_DEFINITIONS}/group-export"}]
    return []
