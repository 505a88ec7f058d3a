"""Read lab rows -> DocumentReference + DiagnosticReport + Observations (https://hl7.org/fhir/R4/diagnosticreport.html, https://hl7.org/fhir/R4/observation.html).

The DocumentReference holds the original file; the DiagnosticReport groups one Observation per
result row; each Observation carries the LOINC code, the value as a UCUM Quantity, the printed
reference range, the interpretation from the printed flag, ``derivedFrom`` the DocumentReference
and category ``laboratory``. A row with any reason to doubt it is ``preliminary`` (and so is the
report); the reasons go in ``Observation.note``. Observation identifiers come from
:func:`ingest.observation.identifier_value`, so the same result read again is the same resource.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ingest import units
from ingest.bundle import Entry, conditional_create
from ingest.document import document_reference, sha256_hex
from ingest.labs import LOINC
from ingest.mapping import Measure
from ingest.observation import INGEST_SYSTEM, Resolved, build, identifier_value
from ingest.ocr.checks import CheckedRow

SOURCE = "lab-report"
REPORT_SYSTEM = "urn:fhir-server:ingest:lab-report"
INTERPRETATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
INTERPRETATION_DISPLAY = {
    "H": "High",
    "L": "Low",
    "N": "Normal",
    "HH": "Critical high",
    "LL": "Critical low",
    "A": "Abnormal",
    "AA": "Critical abnormal",
}
LAB_REPORT_CODE = {"system": LOINC, "code": "11502-2", "display": "Laboratory report"}
_V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"


@dataclass(frozen=True, slots=True)
class ReadReport:
    """What was read from one lab report file."""

    file: str
    data: bytes
    content_type: str
    rows: tuple[CheckedRow, ...]
    effective: str | None  # FHIR date/dateTime the specimens were collected, when printed


@dataclass(frozen=True, slots=True)
class LabEntries:
    document: Entry
    report: Entry
    observations: tuple[Entry, ...]

    @property
    def all(self) -> list[Entry]:
        return [self.document, self.report, *self.observations]


def _quantity(value: Decimal, unit: str) -> dict[str, Any]:
    return {
        "value": units.json_number(value),
        "unit": units.display(unit),
        "system": units.UCUM_SYSTEM,
        "code": unit,
    }


def _reference_range(checked: CheckedRow) -> list[dict[str, Any]]:
    rng = checked.row.range
    if rng is None:
        return []
    out: dict[str, Any] = {}
    if rng.low is not None:
        out["low"] = (
            _quantity(rng.low, checked.unit) if checked.unit else {"value": units.json_number(rng.low)}
        )
    if rng.high is not None:
        out["high"] = (
            _quantity(rng.high, checked.unit) if checked.unit else {"value": units.json_number(rng.high)}
        )
    out["text"] = rng.text
    return [out]


def _measure(checked: CheckedRow) -> Measure:
    test = checked.test
    unit = checked.unit or ""
    if test is None:
        return Measure(f"lab:{checked.row.name}", "unknown", checked.row.name, (unit,), "laboratory")
    return Measure(f"lab:{test.code}", test.code, test.display, (unit,), "laboratory")


def observation_entry(
    checked: CheckedRow, *, patient_ref: str, document_url: str, effective: str | None, document_key: str
) -> Entry:
    """One result row as a conditional-create Observation."""
    row = checked.row
    value = units.json_number(row.value)
    resolved = Resolved(_measure(checked), effective or "", None, value, checked.unit or "")
    # Without a collection time the document itself keeps identical values of two reports apart.
    ident = identifier_value(
        resolved, source=SOURCE, device_key="" if effective else document_key, patient=patient_ref
    )
    status = "final" if checked.final else "preliminary"
    obs = build(resolved, patient_ref=patient_ref, identifier=ident, status=status)
    if checked.test is None:
        obs["code"] = {"text": row.name}
    else:
        obs["code"]["text"] = row.name
    if not effective:
        obs.pop("effectiveDateTime", None)
    if checked.unit:
        quantity = _quantity(row.value, checked.unit)
    else:
        quantity = {"value": value}
        if row.unit:
            quantity["unit"] = row.unit
    if row.comparator:
        quantity["comparator"] = row.comparator
    obs["valueQuantity"] = quantity
    if checked.interpretation:
        code = checked.interpretation
        obs["interpretation"] = [
            {
                "coding": [
                    {"system": INTERPRETATION_SYSTEM, "code": code, "display": INTERPRETATION_DISPLAY[code]}
                ]
            }
        ]
    if checked.reasons:
        obs["note"] = [{"text": "Needs review: " + "; ".join(checked.reasons)}]
    ranges = _reference_range(checked)
    if ranges:
        obs["referenceRange"] = ranges
    obs["derivedFrom"] = [{"reference": document_url}]
    return conditional_create(obs, INGEST_SYSTEM, ident)


def entries(read: ReadReport, *, patient_ref: str) -> LabEntries:
    """The DocumentReference, the DiagnosticReport and one Observation per read row."""
    digest = sha256_hex(read.data)
    doc = document_reference(
        read.data,
        content_type=read.content_type,
        title=read.file,
        patient_ref=patient_ref,
        type_concept={"coding": [dict(LAB_REPORT_CODE)], "text": "Laboratory report"},
        description=f"Lab report {read.file} as received",
    )
    observations: list[Entry] = []
    seen: set[str] = set()
    for checked in read.rows:
        entry = observation_entry(
            checked,
            patient_ref=patient_ref,
            document_url=doc.full_url,
            effective=read.effective,
            document_key=digest,
        )
        if entry.full_url not in seen:
            seen.add(entry.full_url)
            observations.append(entry)
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": REPORT_SYSTEM, "value": digest}],
        "status": "final" if all(c.final for c in read.rows) else "preliminary",
        "category": [{"coding": [{"system": _V2_0074, "code": "LAB", "display": "Laboratory"}]}],
        "code": {"coding": [dict(LAB_REPORT_CODE)], "text": "Laboratory report"},
        "subject": {"reference": patient_ref},
    }
    if read.effective:
        report["effectiveDateTime"] = read.effective
    report["result"] = [{"reference": o.full_url} for o in observations]
    report_entry = conditional_create(report, REPORT_SYSTEM, digest)
    doc.resource["context"] = {"related": [{"reference": report_entry.full_url}]}
    return LabEntries(doc, report_entry, tuple(observations))


def reasons_by_row(rows: Sequence[CheckedRow]) -> list[tuple[str, str]]:
    """(location, message) for every doubted row, for the problem report."""
    out = []
    for c in rows:
        if c.reasons:
            label = c.test.code if c.test else "no code"
            out.append((c.line.location, f"{c.row.name!r} ({label}) is preliminary: " + "; ".join(c.reasons)))
    return out
