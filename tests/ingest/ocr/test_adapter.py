"""A lab report as text PDF, clean PNG and rotated blurred PNG ingests into the expected resources (ingest/ocr/adapter.py, https://hl7.org/fhir/R4/diagnosticreport.html)."""

from __future__ import annotations

import base64
import hashlib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ingest.ocr import ADAPTER, ingest_lab_report
from ingest.pipeline import DocumentAdapter, ReadContext, get_adapter, ingest_file
from ingest.report import IngestResult
from tests.ingest.expectations import validate_with_r4b
from tests.ingest.lab_fixtures import (
    LabReport,
    make_no_table_pdf,
    make_report,
    render_image,
    render_pdf,
    render_png,
)

PATIENT = "Patient/synthetic-1"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
KINDS = ("text-pdf", "clean-png", "rotated-blurred-png")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report() -> LabReport:
    return make_report(seed=11)


@pytest.fixture(scope="module")
def files(report: LabReport, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("labs")
    return {
        "text-pdf": render_pdf(report, folder / "report.pdf"),
        "clean-png": render_png(report, folder / "report.png"),
        "rotated-blurred-png": render_png(report, folder / "report-photo.png", degraded=True),
    }


@pytest.fixture(scope="module")
def results(files: dict[str, Path]) -> dict[str, IngestResult]:
    return {kind: ingest_lab_report(path, PATIENT) for kind, path in files.items()}


def _only(result: IngestResult, resource_type: str) -> dict[str, Any]:
    found = result.resources_of(resource_type)
    assert len(found) == 1, [r["resourceType"] for r in result.resources]
    return found[0]


def _quantity(value: Decimal, ucum: str) -> dict[str, Any]:
    return {"value": float(value) if "." in str(value) else int(value), "system": UCUM, "code": ucum}


@pytest.mark.parametrize("kind", KINDS)
def test_one_transaction_bundle_of_conditional_creates(kind: str, results: dict[str, IngestResult]) -> None:
    result = results[kind]
    assert len(result.bundles) == 1
    bundle = result.bundles[0]
    assert bundle["type"] == "transaction"
    types = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert types[:2] == ["DocumentReference", "DiagnosticReport"]
    assert types[-1] == "Provenance"
    for entry in bundle["entry"]:
        assert entry["fullUrl"].startswith("urn:uuid:")
        assert entry["request"]["method"] == "POST"
        assert entry["request"]["ifNoneExist"].startswith(("identifier=", "_tag="))


@pytest.mark.parametrize("kind", KINDS)
def test_document_reference_holds_the_original(
    kind: str, files: dict[str, Path], results: dict[str, IngestResult]
) -> None:
    data = files[kind].read_bytes()
    doc = _only(results[kind], "DocumentReference")
    attachment = doc["content"][0]["attachment"]
    assert base64.b64decode(attachment["data"]) == data
    assert attachment["contentType"] == ("application/pdf" if kind == "text-pdf" else "image/png")
    assert attachment["size"] == len(data)
    assert attachment["hash"] == base64.b64encode(hashlib.sha1(data).digest()).decode()
    assert doc["identifier"] == [
        {"system": "urn:fhir-server:ingest:document", "value": hashlib.sha256(data).hexdigest()}
    ]
    assert doc["status"] == "current"
    assert doc["subject"] == {"reference": PATIENT}
    assert doc["type"]["coding"][0] == {"system": LOINC, "code": "11502-2", "display": "Laboratory report"}


@pytest.mark.parametrize("kind", KINDS)
def test_diagnostic_report_groups_the_results(kind: str, results: dict[str, IngestResult]) -> None:
    result = results[kind]
    report = _only(result, "DiagnosticReport")
    urls = {e["resource"]["resourceType"]: e["fullUrl"] for e in result.bundles[0]["entry"]}
    obs_urls = [
        e["fullUrl"] for e in result.bundles[0]["entry"] if e["resource"]["resourceType"] == "Observation"
    ]
    assert report["result"] == [{"reference": u} for u in obs_urls]
    assert report["code"]["coding"][0]["code"] == "11502-2"
    assert report["category"][0]["coding"][0]["code"] == "LAB"
    assert report["subject"] == {"reference": PATIENT}
    assert report["effectiveDateTime"] == "2024-03-05"
    doc = _only(result, "DocumentReference")
    assert doc["context"]["related"] == [{"reference": urls["DiagnosticReport"]}]
    statuses = {o["status"] for o in result.resources_of("Observation")}
    assert report["status"] == ("final" if statuses == {"final"} else "preliminary")


@pytest.mark.parametrize("kind", KINDS)
def test_every_row_becomes_the_expected_observation(
    kind: str, report: LabReport, results: dict[str, IngestResult]
) -> None:
    result = results[kind]
    doc_url = result.bundles[0]["entry"][0]["fullUrl"]
    observations = {o["code"]["coding"][0]["code"]: o for o in result.resources_of("Observation")}
    assert sorted(observations) == sorted(r.loinc for r in report.rows)
    for row in report.rows:
        obs = observations[row.loinc]
        label = f"{kind} {row.printed}"
        assert obs["code"]["coding"][0]["system"] == LOINC, label
        assert obs["code"]["coding"][0]["display"], label
        assert obs["category"][0]["coding"][0]["code"] == "laboratory", label
        assert obs["subject"] == {"reference": PATIENT}, label
        assert obs["effectiveDateTime"] == "2024-03-05", label
        quantity = obs["valueQuantity"]
        assert {k: quantity[k] for k in ("value", "system", "code")} == _quantity(row.value, row.ucum), label
        ref = obs["referenceRange"][0]
        if row.low is None:
            assert "low" not in ref, label
        else:
            assert {k: ref["low"][k] for k in ("value", "system", "code")} == _quantity(row.low, row.ucum), (
                label
            )
        if row.high is None:
            assert "high" not in ref, label
        else:
            assert {k: ref["high"][k] for k in ("value", "system", "code")} == _quantity(
                row.high, row.ucum
            ), label
        assert ref["text"] == row.range_text, label
        coding = obs["interpretation"][0]["coding"][0]
        assert (coding["system"], coding["code"]) == (INTERPRETATION, row.interpretation), label
        assert obs["derivedFrom"] == [{"reference": doc_url}], label
        assert obs["identifier"][0]["system"] == "urn:fhir-server:ingest", label


def test_text_pdf_rows_are_all_final(results: dict[str, IngestResult]) -> None:
    result = results["text-pdf"]
    assert {o["status"] for o in result.resources_of("Observation")} == {"final"}
    assert result.problems == []


@pytest.mark.parametrize("kind", KINDS)
def test_every_preliminary_row_is_reported(kind: str, results: dict[str, IngestResult]) -> None:
    result = results[kind]
    preliminary = [o for o in result.resources_of("Observation") if o["status"] == "preliminary"]
    warnings = [p for p in result.problems if p.severity == "warning" and "is preliminary" in p.message]
    assert len(warnings) == len(preliminary)
    for obs in preliminary:
        assert obs["note"][0]["text"].startswith("Needs review")


@pytest.mark.parametrize("kind", KINDS)
def test_every_resource_validates_with_r4b(kind: str, results: dict[str, IngestResult]) -> None:
    assert validate_with_r4b(results[kind]) == len(results[kind].resources)


def test_rotated_page_is_turned_and_levelled(results: dict[str, IngestResult]) -> None:
    notes = [p.message for p in results["rotated-blurred-png"].problems if p.severity == "information"]
    assert any("turned 90 degrees" in n and "levelled by -3.0" in n for n in notes), notes


@pytest.mark.parametrize("kind", ["text-pdf", "clean-png"])
def test_reingesting_the_same_file_gives_the_same_conditional_creates(
    kind: str, files: dict[str, Path]
) -> None:
    first = ingest_lab_report(files[kind], PATIENT)
    again = ingest_lab_report(files[kind], PATIENT)

    def keys(r: IngestResult) -> list[tuple[str, str | None]]:
        return [(e["fullUrl"], e["request"].get("ifNoneExist")) for e in r.bundles[0]["entry"]]

    assert keys(first) == keys(again)


def test_a_pdf_with_no_table_is_a_problem_not_a_bundle(tmp_path: Path) -> None:
    result = ingest_lab_report(make_no_table_pdf(tmp_path / "letter.pdf"), PATIENT)
    assert result.bundles == []
    [problem] = result.problems
    assert problem.file == "letter.pdf"
    assert problem.location == "page 1 line 3"
    assert "no lab result table" in problem.message


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("results.pdf", b"%PDF-1.4\n%broken beyond repair"),
        ("scan.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40),
        ("labs.csv", b"test,value\nsodium,140\n"),
        ("study.dcm", b"\x00" * 128 + b"DICM" + b"\x00" * 64),
    ],
)
def test_wrong_or_broken_files_are_problems_not_exceptions(name: str, data: bytes, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    result = ingest_lab_report(path, PATIENT)
    assert result.bundles == []
    assert result.problems and all(p.file == name for p in result.problems)
    assert result.problems[0].location == "byte 0"
    assert not result.ok


def test_registered_as_the_lab_report_format(tmp_path: Path, files: dict[str, Path]) -> None:
    assert get_adapter("lab-report") is ADAPTER
    ctx = ReadContext(file="report.pdf")
    bundles = ADAPTER.ingest(files["text-pdf"], ctx, PATIENT)
    assert len(bundles) == 1 and ctx.counts["observations"] == 16
    assert isinstance(ADAPTER, DocumentAdapter)
    assert ingest_file(files["text-pdf"], "auto", PATIENT).counts["observations"] == 16


def test_a_scanned_pdf_without_text_layer_is_read_by_ocr(report: LabReport, tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    render_image(report).convert("RGB").save(path, format="PDF", resolution=200)
    result = ingest_lab_report(path, PATIENT)
    assert result.counts["ocr_pages"] == 1
    codes = {o["code"]["coding"][0]["code"] for o in result.resources_of("Observation")}
    assert codes == {r.loinc for r in report.rows}
    assert _only(result, "DocumentReference")["content"][0]["attachment"]["contentType"] == "application/pdf"
