"""DICOM coded concepts -> FHIR Coding: coding scheme designators to code system URIs (https://dicom.nema.org/medical/dicom/current/output/chtml/part16/chapter_8.html).

Designators with an HL7-registered URI map to it (DICOM PS3.16 section 8, HL7 terminology
NamingSystems); any other scheme that the data set identifies by UID (Coding Scheme UID in the
item, or the Coding Scheme Identification Sequence) becomes ``urn:oid:<uid>``; a scheme known by
neither is left without a system, and the caller reports it.
"""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

DCM_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"
SYSTEMS: dict[str, str] = {
    "DCM": DCM_SYSTEM,
    "SCT": "http://snomed.info/sct",
    "SRT": "http://snomed.info/srt",
    "LN": "http://loinc.org",
    "UCUM": "http://unitsofmeasure.org",
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "I10P": "http://www.cms.gov/Medicare/Coding/ICD10",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
}


def scheme_uids(ds: Dataset) -> dict[str, str]:
    """Designator -> UID from the data set's Coding Scheme Identification Sequence (0008,0110)."""
    out: dict[str, str] = {}
    for item in ds.get("CodingSchemeIdentificationSequence", []):
        designator = str(item.get("CodingSchemeDesignator", "")).strip()
        uid = str(item.get("CodingSchemeUID", "")).strip()
        if designator and uid:
            out[designator] = uid
    return out


def system_for(item: Dataset, uids: dict[str, str] | None = None) -> str | None:
    """The FHIR code system URI of a code item (Code Value, Coding Scheme Designator, ...), or None."""
    designator = str(item.get("CodingSchemeDesignator", "")).strip()
    if designator in SYSTEMS:
        return SYSTEMS[designator]
    uid = str(item.get("CodingSchemeUID", "")).strip() or (uids or {}).get(designator, "")
    return f"urn:oid:{uid}" if uid else None


def code_value(item: Dataset) -> str:
    """Code Value, or Long Code Value / URN Code Value for codes longer than 16 characters."""
    for keyword in ("CodeValue", "LongCodeValue", "URNCodeValue"):
        value = str(item.get(keyword, "")).strip()
        if value:
            return value
    return ""


def concept(item: Dataset, uids: dict[str, str] | None = None) -> tuple[dict[str, Any], str | None]:
    """A CodeableConcept for a code item, and the designator when its scheme has no known system."""
    meaning = str(item.get("CodeMeaning", "")).strip()
    code = code_value(item)
    system = system_for(item, uids)
    cc: dict[str, Any] = {}
    if system and code:
        coding: dict[str, Any] = {"system": system, "code": code}
        if meaning:
            coding["display"] = meaning
        cc["coding"] = [coding]
    cc["text"] = meaning or code
    unknown = None if system else str(item.get("CodingSchemeDesignator", "")).strip() or "(none)"
    return cc, unknown
