"""DICOM file -> ImagingStudy (+ DocumentReference, DiagnosticReport, Observations for SR and encapsulated documents) (https://hl7.org/fhir/R4/imagingstudy.html).

Pure: a file's bytes in, one transaction Bundle and problems out. Every DICOM instance becomes
an ImagingStudy with its series and instance (conditional create on the Study Instance UID). A
Structured Report is also kept as a DocumentReference (the SR bytes, ``application/dicom``) and
read: each NUM content item becomes an Observation (code from the concept name, value and UCUM
unit, ``derivedFrom`` the DocumentReference, ``partOf`` the ImagingStudy) grouped by a
DiagnosticReport. An Encapsulated PDF becomes a DocumentReference holding the PDF.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from ingest import units
from ingest.bundle import Entry, conditional_create
from ingest.dicom import coding, imaging_study, sr
from ingest.dicom.imaging_study import text, uid_identifier
from ingest.document import FileAdapter, bundle, document_reference
from ingest.mapping import Measure
from ingest.observation import Resolved, build
from ingest.pipeline import ReadContext
from ingest.report import IngestResult

SOURCE = "dicom"
SR_SYSTEM = "urn:fhir-server:ingest:dicom-sr"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
REQUIRED = (
    ("(0008,0016)", "SOPClassUID"),
    ("(0008,0018)", "SOPInstanceUID"),
    ("(0020,000D)", "StudyInstanceUID"),
    ("(0020,000E)", "SeriesInstanceUID"),
)
_V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
_LOINC = "http://loinc.org"


def read_dataset(data: bytes, ctx: ReadContext) -> Dataset | None:
    """The data set of a DICOM file (Part 10, or a bare data set with a warning); None and a problem otherwise."""
    try:
        return pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError:
        pass
    except Exception as exc:  # truncated or corrupt Part 10 file: pydicom raises many types
        ctx.problem("byte 132", f"DICOM file cannot be parsed: {exc}")
        return None
    # No preamble/'DICM' prefix: some archives store bare data sets. Accept one only when it
    # reads cleanly and identifies an instance; anything else is not DICOM.
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        missing = [keyword for _, keyword in REQUIRED if not text(ds, keyword)]
    except Exception:
        ctx.problem("byte 128", "not a DICOM file: no 'DICM' prefix at byte 128 and no readable data set")
        return None
    if missing:
        ctx.problem(
            "byte 128",
            "not a usable DICOM file: no 'DICM' prefix at byte 128, and as a bare data set it lacks "
            + ", ".join(missing),
        )
        return None
    ctx.problem(
        "byte 128", "no DICOM File Meta Information ('DICM' prefix); read as a bare data set", "warning"
    )
    return ds


def _missing(ds: Dataset, ctx: ReadContext) -> bool:
    missing = False
    for tag, keyword in REQUIRED:
        if not text(ds, keyword):
            ctx.problem(f"{tag} {keyword}", f"required element {keyword} is missing or empty")
            missing = True
    return missing


def _status(ds: Dataset) -> str:
    """``preliminary`` for an SR flagged preliminary or partial, else ``final`` (PS3.3 C.17.2)."""
    if text(ds, "PreliminaryFlag") == "PRELIMINARY" or text(ds, "CompletionFlag") == "PARTIAL":
        return "preliminary"
    return "final"


def _quantity(m: sr.Measurement, ctx: ReadContext) -> dict[str, Any]:
    assert m.value is not None
    quantity: dict[str, Any] = {"value": units.json_number(m.value)}
    unit_item = m.unit
    if unit_item is None:
        ctx.problem(m.path, "NUM item has no Measurement Units Code Sequence (0040,08EA)", "warning")
        return quantity
    code = coding.code_value(unit_item)
    meaning = str(unit_item.get("CodeMeaning", "")).strip()
    scheme = str(unit_item.get("CodingSchemeDesignator", "")).strip()
    if scheme == "UCUM" and units.is_ucum(code):
        quantity.update({"unit": meaning or code, "system": units.UCUM_SYSTEM, "code": code})
    else:
        quantity["unit"] = meaning or code
        ctx.problem(
            m.path, f"unit {code!r} ({scheme or 'no scheme'}) is not a UCUM code; kept as text", "warning"
        )
    return quantity


def _observation(
    m: sr.Measurement,
    ds: Dataset,
    ctx: ReadContext,
    *,
    patient_ref: str,
    document_url: str,
    study_url: str,
    status: str,
    effective: str | None,
) -> Entry | None:
    if m.problem is not None or m.value is None:
        ctx.problem(m.path, m.problem or "NUM item without a value")
        ctx.counts["rejected"] += 1
        return None
    if m.concept is None:
        ctx.problem(m.path, "NUM item has no Concept Name Code Sequence (0040,A043)")
        ctx.counts["rejected"] += 1
        return None
    code, unknown = coding.concept(m.concept, coding.scheme_uids(ds))
    if unknown is not None:
        ctx.problem(
            m.path, f"coding scheme {unknown!r} has no known system; the concept is kept as text", "warning"
        )
    sop_uid = text(ds, "SOPInstanceUID")
    if m.observation_uid:
        ident = uid_identifier(m.observation_uid)
        system, value = ident["system"], ident["value"]
    else:
        system, value = SR_SYSTEM, f"{sop_uid}/{m.item_id}"
    measure = Measure(f"dicom:{code['text']}", "", str(code["text"]), ("",), "imaging")
    resolved = Resolved(measure, effective or "", None, units.json_number(m.value), "")
    obs = build(resolved, patient_ref=patient_ref, identifier=value, status=status)
    obs["identifier"] = [{"system": system, "value": value}]
    obs["code"] = code
    if not effective:
        obs.pop("effectiveDateTime", None)
    obs["valueQuantity"] = _quantity(m, ctx)
    if m.tracking:
        obs["note"] = [{"text": f"Tracking identifier: {m.tracking}"}]
    obs["partOf"] = [{"reference": study_url}]
    obs["derivedFrom"] = [{"reference": document_url}]
    return conditional_create(obs, system, value)


def _sr_entries(data: bytes, ds: Dataset, ctx: ReadContext, patient_ref: str, study: Entry) -> list[Entry]:
    sop_uid = text(ds, "SOPInstanceUID")
    title_item = ds.get("ConceptNameCodeSequence")
    title, _ = coding.concept(title_item[0]) if title_item else ({"text": "Structured report"}, None)
    ident = uid_identifier(sop_uid)
    document = document_reference(
        data,
        content_type="application/dicom",
        title=f"{ctx.file} ({title['text']})",
        patient_ref=patient_ref,
        type_concept=title,
        identifier=(ident["system"], ident["value"]),
        description=text(ds, "SeriesDescription") or text(ds, "StudyDescription") or None,
    )
    document.resource["masterIdentifier"] = dict(ident)
    status = _status(ds)
    effective = imaging_study.fhir_when(ds, "ContentDate", "ContentTime")
    observations: list[Entry] = []
    seen: set[str] = set()
    for m in sr.measurements(ds):
        ctx.counts["records"] += 1
        obs = _observation(
            m,
            ds,
            ctx,
            patient_ref=patient_ref,
            document_url=document.full_url,
            study_url=study.full_url,
            status=status,
            effective=effective,
        )
        if obs is not None and obs.full_url not in seen:
            seen.add(obs.full_url)
            observations.append(obs)
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": SR_SYSTEM, "value": sop_uid}],
        "status": status,
        "category": [{"coding": [{"system": _V2_0074, "code": "RAD", "display": "Radiology"}]}],
        "code": title,
        "subject": {"reference": patient_ref},
    }
    if effective:
        report["effectiveDateTime"] = effective
    report["result"] = [{"reference": o.full_url} for o in observations]
    report["imagingStudy"] = [{"reference": study.full_url}]
    report_entry = conditional_create(report, SR_SYSTEM, sop_uid)
    document.resource["context"] = {
        "related": [{"reference": report_entry.full_url}, {"reference": study.full_url}]
    }
    ctx.counts["observations"] += len(observations)
    return [document, report_entry, *observations]


def _pdf_entry(ds: Dataset, ctx: ReadContext, patient_ref: str, study: Entry) -> list[Entry]:
    raw = ds.get("EncapsulatedDocument")
    if raw is None:
        ctx.problem("(0042,0011) EncapsulatedDocument", "Encapsulated PDF without its document")
        return []
    pdf = bytes(raw)
    length = imaging_study.integer(ds, "EncapsulatedDocumentLength")
    if length is not None and length <= len(pdf):
        pdf = pdf[:length]  # drop the even-length padding byte
    ident = uid_identifier(text(ds, "SOPInstanceUID"))
    concept = ds.get("ConceptNameCodeSequence")
    type_concept, _ = coding.concept(concept[0]) if concept else ({"text": "Encapsulated PDF"}, None)
    document = document_reference(
        pdf,
        content_type=text(ds, "MIMETypeOfEncapsulatedDocument") or "application/pdf",
        title=text(ds, "DocumentTitle") or ctx.file,
        patient_ref=patient_ref,
        type_concept=type_concept,
        identifier=(ident["system"], ident["value"]),
    )
    document.resource["masterIdentifier"] = dict(ident)
    document.resource["context"] = {"related": [{"reference": study.full_url}]}
    return [document]


def ingest_bytes(data: bytes, ctx: ReadContext, patient_ref: str) -> list[dict[str, Any]]:
    """The transaction Bundle for one DICOM file's bytes (none when it is not usable DICOM)."""
    ds = read_dataset(data, ctx)
    if ds is None:
        return []
    try:
        if _missing(ds, ctx):
            return []
        study = imaging_study.entry(ds, patient_ref=patient_ref)
        entries: list[Entry] = [study]
        if sr.is_sr(ds):
            entries += _sr_entries(data, ds, ctx, patient_ref, study)
        elif text(ds, "SOPClassUID") == ENCAPSULATED_PDF:
            entries += _pdf_entry(ds, ctx, patient_ref, study)
    except Exception as exc:  # a deferred element that fails to decode: report, never raise
        ctx.problem("", f"DICOM data set cannot be read: {exc}")
        return []
    ctx.counts["instances"] += 1
    ctx.counts["bundles"] += 1
    return [bundle(entries, source=SOURCE, file=ctx.file, recorded=ctx.options.get("recorded"))]


ADAPTER = FileAdapter(SOURCE, ingest_bytes)


def ingest_dicom(
    path: str | Path,
    patient_ref: str,
    *,
    options: dict[str, Any] | None = None,
    ctx: ReadContext | None = None,
) -> IngestResult:
    """Ingest one DICOM file: Bundle, problems and counts as an :class:`IngestResult`."""
    result: IngestResult = ADAPTER.run(path, patient_ref, options=options, ctx=ctx)
    return result
