"""The patients a resource is about: its Patient compartment (https://hl7.org/fhir/R4/compartmentdefinition-patient.html)."""

from __future__ import annotations

from typing import Any

from ..search.compartment import patient_compartment_params
from ..search.index import param_tuples


def of_resource(resource: dict[str, Any]) -> set[str]:
    """Ids of the Patients whose compartment holds `resource` (a Patient: itself). Local references only."""
    res_type = resource.get("resourceType")
    if not isinstance(res_type, str):
        return set()
    if res_type == "Patient":
        rid = resource.get("id")
        return {rid} if isinstance(rid, str) else set()
    out: set[str] = set()
    for code in patient_compartment_params(res_type):
        for row in param_tuples(resource, code).get("reference", []):
            # (param_id, grp, target_type, target_id, url): url is None for a local reference
            if row[2] == "Patient" and row[4] is None:
                out.add(str(row[3]))
    return out
