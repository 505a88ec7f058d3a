"""DICOM files ingest into ImagingStudy, SR measurements into Observations; bad input is a problem (ingest/dicom/adapter.py, https://hl7.org/fhir/R4/imagingstudy.html)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file

from ingest.dicom import ADAPTER, ingest_dicom
from ingest.pipeline import ReadContext, get_adapter
from ingest.report import IngestResult
from tests.ingest.dicom.measurement_report import EXPECTED, make_measurement_report
from tests.ingest.expectations import validate_with_r4b

PATIENT = "Patient/synthetic-1"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
UCUM = "http://unitsofmeasure.org"
BUNDLED = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtdose.dcm", "waveform_ecg.dcm", "JPEG2000.dcm")


def _testdata(name: str) -> Path:
    """A file of pydicom's bundled test data."""
    path = get_testdata_file(name)
    assert isinstance(path, str), name
    return Path(path)


def _only(result: IngestResult, resource_type: str) -> dict[str, Any]:
    found = result.resources_of(resource_type)
    assert len(found) == 1, [r["resourceType"] for r in result.resources]
    return found[0]


@pytest.fixture(scope="module")
def sr_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_measurement_report(tmp_path_factory.mktemp("sr") / "measurements.dcm")


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_test_files_become_an_imaging_study(name: str) -> None:
    path = _testdata(name)
    ds = pydicom.dcmread(path)
    result = ingest_dicom(path, PATIENT)
    assert result.problems == []
    assert [r["resourceType"] for r in result.resources] == ["ImagingStudy", "Provenance"]
    study = _only(result, "ImagingStudy")
    assert study["identifier"][0] == {"system": "urn:dicom:uid", "value": f"urn:oid:{ds.StudyInstanceUID}"}
    assert study["status"] == "available"
    assert study["subject"] == {"reference": PATIENT}
    assert study["modality"] == [{"system": DCM, "code": ds.Modality}]
    [series] = study["series"]
    assert series["uid"] == ds.SeriesInstanceUID
    assert series["modality"] == {"system": DCM, "code": ds.Modality}
    [instance] = series["instance"]
    assert instance["uid"] == ds.SOPInstanceUID
    assert instance["sopClass"] == {"system": "urn:ietf:rfc:3986", "code": f"urn:oid:{ds.SOPClassUID}"}
    entry = result.bundles[0]["entry"][0]
    assert entry["request"] == {
        "method": "POST",
        "url": "ImagingStudy",
        "ifNoneExist": f"identifier=urn:dicom:uid|urn:oid:{ds.StudyInstanceUID}",
    }
    assert validate_with_r4b(result) == 2


def test_study_time_is_kept_only_with_its_zone() -> None:
    ct = ingest_dicom(_testdata("CT_small.dcm"), PATIENT)  # TimezoneOffsetFromUTC -0500
    assert _only(ct, "ImagingStudy")["started"] == "2004-01-19T07:27:30-05:00"
    plan = ingest_dicom(_testdata("rtplan.dcm"), PATIENT)  # no offset: the date alone
    assert _only(plan, "ImagingStudy")["started"] == "2003-07-16"


def test_accession_number_is_an_acsn_identifier() -> None:
    result = ingest_dicom(_testdata("waveform_ecg.dcm"), PATIENT)
    acsn = _only(result, "ImagingStudy")["identifier"][1]
    assert acsn["value"] == "03028041970546"
    assert acsn["type"]["coding"][0]["code"] == "ACSN"


def test_highdicom_measurement_report_becomes_observations(sr_path: Path) -> None:
    ds = pydicom.dcmread(sr_path)
    result = ingest_dicom(sr_path, PATIENT)
    assert result.problems == []
    assert validate_with_r4b(result) == len(result.resources)
    urls = {e["resource"]["resourceType"]: e["fullUrl"] for e in result.bundles[0]["entry"]}
    observations = result.resources_of("Observation")
    assert len(observations) == len(EXPECTED)
    for obs, want in zip(observations, EXPECTED, strict=True):
        coding = obs["code"]["coding"][0]
        assert (coding["system"], coding["code"]) == (want.system, want.code)
        assert obs["valueQuantity"]["value"] == want.value
        assert (obs["valueQuantity"]["system"], obs["valueQuantity"]["code"]) == (UCUM, want.ucum)
        assert obs["status"] == "final"
        assert obs["category"][0]["coding"][0]["code"] == "imaging"
        assert obs["subject"] == {"reference": PATIENT}
        assert obs["derivedFrom"] == [{"reference": urls["DocumentReference"]}]
        assert obs["partOf"] == [{"reference": urls["ImagingStudy"]}]
        assert obs["identifier"][0]["system"] == "urn:fhir-server:ingest:dicom-sr"
        assert obs["identifier"][0]["value"].startswith(f"{ds.SOPInstanceUID}/1.")
        assert obs["note"] == [{"text": "Tracking identifier: Lesion 1"}]
    report = _only(result, "DiagnosticReport")
    assert report["code"]["coding"][0] == {
        "system": DCM,
        "code": "126000",
        "display": "Imaging Measurement Report",
    }
    assert report["result"] == [
        {"reference": e["fullUrl"]}
        for e in result.bundles[0]["entry"]
        if e["resource"]["resourceType"] == "Observation"
    ]
    assert report["imagingStudy"] == [{"reference": urls["ImagingStudy"]}]
    doc = _only(result, "DocumentReference")
    assert doc["masterIdentifier"] == {"system": "urn:dicom:uid", "value": f"urn:oid:{ds.SOPInstanceUID}"}
    assert doc["content"][0]["attachment"]["contentType"] == "application/dicom"
    assert base64.b64decode(doc["content"][0]["attachment"]["data"]) == sr_path.read_bytes()


def test_sr_with_private_codes_keeps_them_by_scheme_uid_and_reports_non_ucum_units() -> None:
    result = ingest_dicom(_testdata("test-SR.dcm"), PATIENT)
    observations = result.resources_of("Observation")
    assert [o["valueQuantity"] for o in observations] == [{"value": 3, "unit": "Length Unit"}] * 2
    assert observations[0]["code"]["coding"][0]["system"] == "urn:oid:1.2.276.0.7230010.3.0.0.1"
    warnings = [p for p in result.problems if p.severity == "warning"]
    assert [p.location for p in warnings] == [
        "ContentSequence[1].ContentSequence[1]",
        "ContentSequence[1].ContentSequence[3].ContentSequence[1]",
    ]
    assert all("not a UCUM code" in p.message for p in warnings)
    assert validate_with_r4b(result) == len(result.resources)


def test_text_only_sr_is_a_document_without_observations() -> None:
    result = ingest_dicom(_testdata("reportsi.dcm"), PATIENT)
    assert [r["resourceType"] for r in result.resources] == [
        "ImagingStudy",
        "DocumentReference",
        "DiagnosticReport",
        "Provenance",
    ]
    assert validate_with_r4b(result) == 4


def test_reingesting_the_same_file_gives_the_same_conditional_creates(sr_path: Path) -> None:
    def keys(r: IngestResult) -> list[tuple[str, str | None]]:
        return [(e["fullUrl"], e["request"].get("ifNoneExist")) for e in r.bundles[0]["entry"]]

    assert keys(ingest_dicom(sr_path, PATIENT)) == keys(ingest_dicom(sr_path, PATIENT))


@pytest.mark.parametrize(
    ("name", "data", "location"),
    [
        ("notes.dcm", b"this is a text file named like DICOM\n" * 10, "byte 128"),
        ("report.pdf", b"%PDF-1.4\n1 0 obj <<>> endobj\n", "byte 128"),
        ("empty.dcm", b"", "byte 128"),
        ("truncated.dcm", b"\x00" * 128 + b"DICM\x02\x00\x00\x00UL\x04\x00", "(0008,0016) SOPClassUID"),
    ],
)
def test_non_dicom_input_is_a_problem_not_an_exception(
    name: str, data: bytes, location: str, tmp_path: Path
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    result = ingest_dicom(path, PATIENT)
    assert result.bundles == []
    problem = result.problems[0]
    assert (problem.file, problem.location, problem.severity) == (name, location, "error")
    assert all(p.severity == "error" for p in result.problems)


def test_bare_data_set_without_uids_names_what_is_missing() -> None:
    result = ingest_dicom(_testdata("no_meta.dcm"), PATIENT)
    assert result.bundles == []
    assert "SOPClassUID" in result.problems[0].message


def test_missing_uid_is_a_problem_naming_the_element(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_testdata("CT_small.dcm"))
    del ds.StudyInstanceUID
    path = tmp_path / "no-study.dcm"
    ds.save_as(path)
    result = ingest_dicom(path, PATIENT)
    assert result.bundles == []
    assert [p.location for p in result.problems] == ["(0020,000D) StudyInstanceUID"]


def test_registered_as_the_dicom_format(sr_path: Path) -> None:
    assert get_adapter("dicom") is ADAPTER
    ctx = ReadContext(file=sr_path.name)
    assert len(ADAPTER.ingest(sr_path, ctx, PATIENT)) == 1
    assert ctx.counts["observations"] == len(EXPECTED)


@pytest.mark.parametrize("numeric", ["1E400", "-1E400", "1E-400"])
def test_sr_value_no_json_number_holds_is_a_problem_and_the_other_measurements_are_kept(
    tmp_path: Path, numeric: str
) -> None:
    ds = pydicom.dcmread(_testdata("test-SR.dcm"))
    item = ds.ContentSequence[1].ContentSequence[1]
    item.MeasuredValueSequence[0].NumericValue = numeric
    path = tmp_path / "sr.dcm"
    ds.save_as(path)
    result = ingest_dicom(path, PATIENT)
    errors = [p for p in result.problems if p.severity == "error"]
    assert [(p.location, p.severity) for p in errors] == [("ContentSequence[1].ContentSequence[1]", "error")]
    assert "out of range" in errors[0].message and numeric in errors[0].message
    assert [o["valueQuantity"]["value"] for o in result.resources_of("Observation")] == [3]
