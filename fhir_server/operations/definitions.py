"""OperationDefinitions of the operations this server defines (https://hl7.org/fhir/R4/operationdefinition.html).

`$ingest` (docs/ingest.md) and `$import` (docs/bulk-data.md, after the Bulk Data import proposal,
https://github.com/smart-on-fhir/bulk-import/blob/master/import.md) have no published definition: the
CapabilityStatement points at these, served at `[base]/OperationDefinition/[name]` without a token
(like the CapabilityStatement itself).
"""

from __future__ import annotations

from typing import Any

NAMES = ("ingest", "import")


def _param(
    name: str, use: str, low: int, high: str, kind: str | None, doc: str, **more: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "use": use, "min": low, "max": high, "documentation": doc}
    if kind is not None:
        out["type"] = kind
    return out | more


def _common(name: str, base: str, title: str, description: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationDefinition",
        "id": name,
        "url": f"{base}/OperationDefinition/{name}",
        "name": title,
        "status": "active",
        "kind": "operation",
        "affectsState": True,
        "code": name,
        "description": description,
    }


def definition(name: str, base: str) -> dict[str, Any]:
    """The OperationDefinition `name` (one of NAMES) with canonical URLs under `base`."""
    accepted = _param(
        "return",
        "out",
        1,
        "1",
        "OperationOutcome",
        "202 Accepted: the request was queued; Content-Location names where its status is polled",
    )
    if name == "ingest":
        return _common(
            name,
            base,
            "Ingest",
            "Turn a file (CSV, Apple Health / Health Connect / Fitbit / Open mHealth export, lab report "
            "PDF or image, DICOM) into Observations and related resources of one patient, in the "
            "background. The status is a Task (Content-Location: [base]/Task/[id]).",
        ) | {
            "resource": ["Patient"],
            "system": True,
            "type": False,
            "instance": True,
            "parameter": [
                _param(
                    "file", "in", 1, "1", "Binary", "The file: a multipart field 'file', or the request body"
                ),
                _param("patient", "in", 0, "1", "string", "Patient/[id] (system level; required there)"),
                _param(
                    "format", "in", 0, "1", "code", "The file's format (fhir-server ingest formats), or auto"
                ),
                _param("timezone", "in", 0, "1", "string", "IANA time zone of local times in the file"),
                accepted,
            ],
        }
    if name == "import":
        input_parts = [
            _param("type", "in", 0, "1", "code", "The resource type of the file"),
            _param("url", "in", 1, "1", "url", "file:///absolute/path under FHIR_BULK_IMPORT_DIR"),
        ]
        return _common(
            name,
            base,
            "Import",
            "Load NDJSON files of resources (validated, indexed, idempotent by id) as a Bulk Data job; "
            "polled like $export. The body may also be the NDJSON itself (application/fhir+ndjson).",
        ) | {
            "system": True,
            "type": False,
            "instance": False,
            "parameter": [
                _param("inputFormat", "in", 0, "1", "code", "application/fhir+ndjson"),
                _param("input", "in", 1, "*", None, "One input file", part=input_parts),
                accepted,
            ],
        }
    raise KeyError(name)
