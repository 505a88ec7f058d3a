"""Adapter registry and streaming ingest runs (https://hl7.org/fhir/R4/http.html#transaction)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.data import get_testdata_file

from ingest.bundle import conditional_create
from ingest.document import bundle
from ingest.observation import Sample
from ingest.pipeline import (
    DocumentAdapter,
    ReadContext,
    UnknownFormat,
    detect_format,
    formats,
    get_adapter,
    ingest_file,
    ingest_samples,
    iter_file,
    register_adapter,
)
from tests.ingest.fixtures import (
    PATIENT,
    apple_every_measure,
    fitbit_payload,
    health_connect_payload,
    long_csv,
    open_mhealth_points,
    write,
    write_apple_zip,
)


def test_builtin_formats_are_registered() -> None:
    assert {"csv", "apple-health", "health-connect", "fitbit", "open-mhealth"} <= set(formats())
    assert get_adapter("Apple").name == "apple-health"
    assert get_adapter("hcgateway").name == "health-connect"


def test_unknown_format_is_refused() -> None:
    with pytest.raises(UnknownFormat, match="garmin"):
        get_adapter("garmin")


def test_registered_adapter_is_dispatched_to(tmp_path: Path) -> None:
    class Echo:
        name = "echo-test"

        def read(self, path: Path, ctx: ReadContext) -> Iterator[Sample]:
            ctx.counts["records"] += 1
            yield Sample("heart_rate", "2024-01-01", path.read_text().strip(), location=1)

    register_adapter("echo-test", Echo(), "echo")
    result = ingest_file(write(tmp_path / "x.txt", "61\n"), "echo", PATIENT)
    [obs] = result.resources_of("Observation")
    assert obs["valueQuantity"]["value"] == 61


def test_detect_format_guesses_from_name_and_content(tmp_path: Path) -> None:
    fb, _ = fitbit_payload()
    hc, _ = health_connect_payload()
    omh, _ = open_mhealth_points()
    assert detect_format(write(tmp_path / "a.csv", long_csv()[0])) == "csv"
    assert detect_format(write(tmp_path / "export.xml", apple_every_measure()[0])) == "apple-health"
    assert detect_format(write_apple_zip(tmp_path / "export.zip", apple_every_measure()[0])) == "apple-health"
    assert detect_format(write(tmp_path / "f.json", fb)) == "fitbit"
    assert detect_format(write(tmp_path / "h.json", hc)) == "health-connect"
    assert detect_format(write(tmp_path / "o.json", omh)) == "open-mhealth"


def test_missing_file_is_a_fatal_problem(tmp_path: Path) -> None:
    result = ingest_file(tmp_path / "nope.csv", "csv", PATIENT)
    [problem] = result.problems
    assert problem.severity == "fatal" and "no such file" in problem.message


def test_streaming_run_yields_bundles_batch_by_batch(tmp_path: Path) -> None:
    text, expected = long_csv()
    run = iter_file(write(tmp_path / "a.csv", text), "csv", PATIENT, batch_size=4)
    sizes = [len(b["entry"]) for b in run]
    assert all(s <= 4 for s in sizes)
    assert run.counts["observations"] == len(expected)
    assert run.counts["bundles"] == len(sizes)
    with pytest.raises(RuntimeError):
        list(run)


def test_ingest_samples_serves_adapters_that_already_have_samples() -> None:
    result = ingest_samples(
        [
            Sample("hba1c", "2024-01-05", "6.1", "%", location="page 1"),
            Sample("hba1c", "2024-01-05", "x", "%", location="page 2"),
        ],
        source="lab-report",
        patient_ref=PATIENT,
        file="report.pdf",
    )
    assert [o["valueQuantity"]["value"] for o in result.resources_of("Observation")] == [6.1]
    [problem] = result.problems
    assert (problem.file, problem.location) == ("report.pdf", "page 2")
    assert not result.ok
    assert result.outcome()["issue"][0]["location"] == ["report.pdf:page 2"]


def test_problem_cap_counts_what_it_does_not_list(tmp_path: Path) -> None:
    rows = "".join(f"2024-01-01T00:00:{i % 60:02d}Z,heart_rate,bad{i},/min\n" for i in range(30))
    result = ingest_file(
        write(tmp_path / "a.csv", "date,metric,value,unit\n" + rows), "csv", PATIENT, max_problems=5
    )
    assert len(result.problems) == 5
    assert result.counts["problems_not_listed"] == 25


@pytest.mark.parametrize("suffix", [".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".PNG"])
def test_lab_report_files_are_detected_by_suffix(tmp_path: Path, suffix: str) -> None:
    assert detect_format(write(tmp_path / f"report{suffix}", b"")) == "lab-report"


@pytest.mark.parametrize(
    "head", [b"%PDF-1.7\n", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"II*\x00", b"MM\x00*"]
)
def test_lab_report_files_are_detected_by_signature_without_suffix(tmp_path: Path, head: bytes) -> None:
    assert detect_format(write(tmp_path / "upload", head + b"\x00" * 64)) == "lab-report"


def test_dicom_is_detected_by_dicm_at_byte_128(tmp_path: Path) -> None:
    ct = get_testdata_file("CT_small.dcm")
    assert isinstance(ct, str)
    assert detect_format(Path(shutil.copy(ct, tmp_path / "IM000001"))) == "dicom"
    assert detect_format(write(tmp_path / "x.dcm", b"")) == "dicom"
    assert detect_format(write(tmp_path / "not-dicom", b"\x00" * 128 + b"DICX,metric\n")) == "csv"


def test_dicom_file_is_dispatched_to_the_document_adapter(tmp_path: Path) -> None:
    ct = get_testdata_file("CT_small.dcm")
    assert isinstance(ct, str)
    path = Path(shutil.copy(ct, tmp_path / "IM000001"))
    result = ingest_file(path, "auto", PATIENT, recorded="2024-05-01T00:00:00Z")
    assert isinstance(get_adapter("dicom"), DocumentAdapter)
    assert [r["resourceType"] for r in result.resources] == ["ImagingStudy", "Provenance"]
    assert result.resources_of("Provenance")[0]["recorded"] == "2024-05-01T00:00:00Z"
    assert result.problems == [] and result.counts["bundles"] == 1


def test_registered_document_adapter_gets_the_file_and_patient(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []

    class Note:
        name = "note-test"

        def ingest(self, path: Path, ctx: ReadContext, patient_ref: str) -> list[dict[str, Any]]:
            seen.append((path.name, patient_ref))
            ctx.counts["records"] += 1
            resource = {"resourceType": "Basic", "code": {"text": path.read_text().strip()}}
            entry = conditional_create(resource, "urn:test", path.name)
            return [bundle([entry], source=self.name, file=ctx.file, recorded=ctx.options.get("recorded"))]

    register_adapter("note-test", Note())
    result = ingest_file(write(tmp_path / "n.txt", "hello\n"), "note-test", PATIENT, batch_size=3)
    assert seen == [("n.txt", PATIENT)]
    assert [r["resourceType"] for r in result.resources] == ["Basic", "Provenance"]
    assert result.counts["records"] == 1


def test_missing_document_file_is_a_fatal_problem(tmp_path: Path) -> None:
    result = ingest_file(tmp_path / "gone.dcm", "auto", PATIENT)
    [problem] = result.problems
    assert result.bundles == [] and problem.severity == "fatal" and "no such file" in problem.message
