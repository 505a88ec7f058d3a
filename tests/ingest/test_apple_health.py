"""Apple Health export.xml / export zip -> Observations (https://developer.apple.com/documentation/healthkit)."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.apple_health import apple_datetime, read_export
from ingest.pipeline import ReadContext, ingest_file
from tests.ingest.expectations import assert_observations, identifiers, validate_with_r4b
from tests.ingest.fixtures import (
    _APPLE_HEAD,
    _APPLE_TAIL,
    PATIENT,
    apple_every_measure,
    hk_blood_pressure,
    hk_record,
    write,
    write_apple_zip,
    zip_bytes,
)

RECORDED = "2024-03-02T10:00:00Z"


@pytest.fixture
def export_xml(tmp_path: Path) -> tuple[Path, list]:
    text, expected = apple_every_measure()
    return write(tmp_path / "export.xml", text), expected


@pytest.mark.parametrize("packaging", ["xml", "zip"])
def test_every_measure_and_unit_quirk_becomes_the_expected_observation(
    tmp_path: Path, packaging: str
) -> None:
    text, expected = apple_every_measure()
    path = (
        write(tmp_path / "export.xml", text)
        if packaging == "xml"
        else write_apple_zip(tmp_path / "export.zip", text)
    )
    result = ingest_file(path, "apple-health", PATIENT, recorded=RECORDED)
    assert result.problems == []
    assert_observations(result, expected, PATIENT)
    assert result.counts["observations"] == len(expected)
    # InBed + Awake sleep, distance, and the two top-level copies of the BP parts are skipped.
    assert result.counts["skipped:HKCategoryValueSleepAnalysisInBed"] == 1
    assert result.counts["skipped:HKCategoryValueSleepAnalysisAwake"] == 1
    assert result.counts["skipped:HKQuantityTypeIdentifierDistanceWalkingRunning"] == 1
    assert result.counts["skipped:HKQuantityTypeIdentifierBloodPressureSystolic"] == 1


def test_every_produced_resource_validates_with_r4b(export_xml: tuple[Path, list]) -> None:
    result = ingest_file(export_xml[0], "apple-health", PATIENT, recorded=RECORDED, batch_size=7)
    assert validate_with_r4b(result) == sum(len(b["entry"]) for b in result.bundles)
    assert len(result.bundles) > 2


def test_watch_and_phone_become_two_devices_despite_changing_pointers(export_xml: tuple[Path, list]) -> None:
    result = ingest_file(export_xml[0], "apple-health", PATIENT, recorded=RECORDED)
    devices = {
        e["fullUrl"]: e["resource"]
        for b in result.bundles
        for e in b["entry"]
        if e["resource"]["resourceType"] == "Device"
    }
    assert len(devices) == 2
    watch = next(d for d in devices.values() if d.get("manufacturer") == "Apple Inc.")
    assert watch["deviceName"][0] == {"name": "Test Apple Watch", "type": "user-friendly-name"}
    assert watch["modelNumber"] == "Watch"
    assert {"type": {"text": "hardware"}, "value": "Watch6,2"} in watch["version"]
    phone = next(d for d in devices.values() if d.get("manufacturer") is None)
    assert phone["type"] == {"text": "software application"}


def test_reingesting_gives_identical_conditional_creates(export_xml: tuple[Path, list]) -> None:
    first = ingest_file(export_xml[0], "apple-health", PATIENT, recorded=RECORDED)
    again = ingest_file(export_xml[0], "apple-health", PATIENT, recorded="2025-01-01T00:00:00Z")
    assert identifiers(first) == identifiers(again)
    assert all(identifiers(first))
    assert [e["fullUrl"] for b in first.bundles for e in b["entry"]] == [
        e["fullUrl"] for b in again.bundles for e in b["entry"]
    ]


def test_another_patient_gets_other_identifiers(export_xml: tuple[Path, list]) -> None:
    a = ingest_file(export_xml[0], "apple-health", "Patient/a", recorded=RECORDED)
    b = ingest_file(export_xml[0], "apple-health", "Patient/b", recorded=RECORDED)
    obs_a = {x for x in identifiers(a) if x.startswith("identifier=urn:fhir-server:ingest|")}
    obs_b = {x for x in identifiers(b) if x.startswith("identifier=urn:fhir-server:ingest|")}
    assert obs_a and not obs_a & obs_b


def test_truncated_export_keeps_records_before_the_cut_and_names_the_line(tmp_path: Path) -> None:
    text, expected = apple_every_measure()
    cut = text.index('<Record type="HKQuantityTypeIdentifierBodyMassIndex"') + 10  # inside the BMI record
    path = write(tmp_path / "export.xml", text[:cut])
    result = ingest_file(path, "apple-health", PATIENT, recorded=RECORDED)
    [problem] = result.problems
    assert problem.file == "export.xml"
    assert problem.severity == "fatal"
    assert problem.location == text[:cut].count("\n") + 1
    assert "XML" in problem.message and "HealthData/Record[" in problem.message
    kept = [
        e["resource"]["code"]["coding"][0]["code"]
        for b in result.bundles
        for e in b["entry"]
        if e["resource"]["resourceType"] == "Observation"
    ]
    assert kept == [x.code for x in expected[:10]]


@pytest.mark.parametrize(
    ("name", "content", "where"),
    [
        ("data.csv", "date,metric,value,unit\n2024-01-01,heart_rate,70,/min\n", 1),
        ("data.json", '{"activities-heart": []}', 1),
        (
            "other.xml",
            '<?xml version="1.0"?>\n<ClinicalDocument><x/></ClinicalDocument>\n',
            "ClinicalDocument",
        ),
    ],
)
def test_file_of_another_format_is_one_fatal_problem(
    tmp_path: Path, name: str, content: str, where: object
) -> None:
    result = ingest_file(write(tmp_path / name, content), "apple-health", PATIENT)
    [problem] = result.problems
    assert (problem.file, problem.location, problem.severity) == (name, where, "fatal")
    assert result.bundles == []


def test_zip_without_export_xml_is_a_problem(tmp_path: Path) -> None:
    path = write(tmp_path / "photos.zip", zip_bytes({"a/readme.txt": "hello"}))
    result = ingest_file(path, "apple-health", PATIENT)
    [problem] = result.problems
    assert problem.file == "photos.zip" and "export.xml" in problem.message
    assert result.bundles == []


def test_bad_records_are_problems_at_their_element_and_the_good_ones_are_kept(tmp_path: Path) -> None:
    body = (
        hk_record("HKQuantityTypeIdentifierHeartRate", "70", "2024-03-01 08:00:00 +0100", unit="count/min")
        + hk_record(
            "HKQuantityTypeIdentifierHeartRate", "fast", "2024-03-01 08:01:00 +0100", unit="count/min"
        )
        + hk_record("HKQuantityTypeIdentifierOxygenSaturation", "n/a", "2024-03-01 08:02:00 +0100", unit="%")
        + hk_record("HKQuantityTypeIdentifierBodyMass", "70", "2024-03-01 08:03:00 +0100", unit="stone-ish")
        + hk_record("HKQuantityTypeIdentifierHeartRate", "71", "yesterday", unit="count/min")
        + hk_record(
            "HKCategoryTypeIdentifierSleepAnalysis",
            "HKCategoryValueSleepAnalysisDreaming",
            "2024-03-01 01:00:00 +0100",
        )
        + hk_blood_pressure("120", "80", "2024-03-01 08:04:00 +0100", nested_only=True).replace(
            "HKQuantityTypeIdentifierBloodPressureDiastolic", "HKQuantityTypeIdentifierBodyMass"
        )
        + hk_record("HKQuantityTypeIdentifierHeartRate", "72", "2024-03-01 08:05:00 +0100", unit="count/min")
    )
    path = write(tmp_path / "export.xml", _APPLE_HEAD + body + _APPLE_TAIL)
    result = ingest_file(path, "apple-health", PATIENT, recorded=RECORDED)
    where = {p.location: p.message for p in result.problems}
    assert set(where) == {
        "HealthData/Record[2]",
        "HealthData/Record[3]",
        "HealthData/Record[4]",
        "HealthData/Record[5]",
        "HealthData/Record[6]",
        "HealthData/Correlation[1]",
    }
    assert "non-numeric" in where["HealthData/Record[2]"]
    assert "non-numeric" in where["HealthData/Record[3]"]
    assert "unit" in where["HealthData/Record[4]"]
    assert "date" in where["HealthData/Record[5]"]
    assert "sleep stage" in where["HealthData/Record[6]"]
    assert "blood pressure" in where["HealthData/Correlation[1]"]
    assert all(p.file == "export.xml" and p.severity == "error" for p in result.problems)
    values = [
        e["resource"]["valueQuantity"]["value"]
        for b in result.bundles
        for e in b["entry"]
        if e["resource"]["resourceType"] == "Observation"
    ]
    assert values == [70, 72]


class _Spy(io.RawIOBase):
    """A byte stream that records how far it has been read."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        chunk = self._buf.read(min(len(b), 4096))
        b[: len(chunk)] = chunk
        self.consumed += len(chunk)
        return len(chunk)


def test_records_stream_out_before_the_file_is_read_to_the_end() -> None:
    lines = "".join(
        hk_record(
            "HKQuantityTypeIdentifierHeartRate",
            str(60 + i % 40),
            f"2024-03-01 08:{i // 60:02d}:{i % 60:02d} +0100",
            unit="count/min",
        )
        for i in range(2000)
    )
    data = (_APPLE_HEAD + lines + _APPLE_TAIL).encode()
    spy = _Spy(data)
    samples = read_export(spy, ReadContext(file="export.xml"))  # type: ignore[arg-type]
    first = next(iter(samples))
    assert first.value == "60"
    assert spy.consumed < len(data) // 4


offsets = st.integers(min_value=-12 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@given(
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1)).map(
        lambda d: d.replace(microsecond=0)
    ),
    offsets,
)
def test_apple_dates_become_fhir_datetimes_with_their_offset(moment: datetime, tz: timezone) -> None:
    aware = moment.replace(tzinfo=tz)
    apple = aware.strftime("%Y-%m-%d %H:%M:%S %z")
    converted = apple_datetime(apple)
    assert datetime.fromisoformat(converted) == aware
    assert converted.endswith(aware.isoformat()[-6:])


@given(st.lists(st.integers(min_value=20, max_value=250), min_size=1, max_size=30))
def test_heart_rate_values_survive_the_export(values: list[int]) -> None:
    body = "".join(
        hk_record(
            "HKQuantityTypeIdentifierHeartRate", str(v), f"2024-03-01 08:00:{i:02d} -0300", unit="count/min"
        )
        for i, v in enumerate(values)
    )
    samples = list(
        read_export(io.BytesIO((_APPLE_HEAD + body + _APPLE_TAIL).encode()), ReadContext(file="x"))
    )
    assert [int(s.value) for s in samples] == values  # type: ignore[arg-type]
    assert [s.start for s in samples] == [f"2024-03-01T08:00:{i:02d}-03:00" for i in range(len(values))]


_NEXT_HR = hk_record("HKQuantityTypeIdentifierHeartRate", "72", "2024-03-01 08:05:00 +0100", unit="count/min")


def _observation_values(result: object) -> list[object]:
    return [o["valueQuantity"]["value"] for o in result.resources_of("Observation")]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("start", "end", "naive"),
    [
        ("2024-03-01 01:30:00 +0100", "2024-03-01 02:00:00", "2024-03-01 02:00:00"),
        ("2024-03-01 01:30:00", "2024-03-01 02:00:00 +0100", "2024-03-01 01:30:00"),
    ],
)
def test_sleep_with_a_zone_on_one_end_only_is_a_problem_and_the_next_records_are_read(
    tmp_path: Path, start: str, end: str, naive: str
) -> None:
    sleep = hk_record(
        "HKCategoryTypeIdentifierSleepAnalysis", "HKCategoryValueSleepAnalysisAsleepREM", start, end
    )
    path = write(tmp_path / "export.xml", _APPLE_HEAD + sleep + _NEXT_HR + _APPLE_TAIL)
    result = ingest_file(path, "apple-health", PATIENT, recorded=RECORDED)
    [problem] = result.problems
    assert (problem.file, problem.location, problem.severity) == (
        "export.xml",
        "HealthData/Record[1]",
        "error",
    )
    assert repr(naive) in problem.message and "time zone" in problem.message
    assert result.counts["rejected"] == 1
    assert _observation_values(result) == [72]


def test_sleep_with_a_zone_on_one_end_only_takes_the_default_zone_for_the_other(tmp_path: Path) -> None:
    sleep = hk_record(
        "HKCategoryTypeIdentifierSleepAnalysis",
        "HKCategoryValueSleepAnalysisAsleepREM",
        "2024-03-01 01:30:00 +0000",
        "2024-03-01 03:00:00",
    )
    path = write(tmp_path / "export.xml", _APPLE_HEAD + sleep + _APPLE_TAIL)
    result = ingest_file(path, "apple-health", PATIENT, default_tz=timezone(timedelta(hours=1)))
    assert result.problems == []
    [obs] = result.resources_of("Observation")
    assert obs["effectivePeriod"] == {
        "start": "2024-03-01T01:30:00+00:00",
        "end": "2024-03-01T03:00:00+01:00",
    }
    assert obs["valueQuantity"]["value"] == 30.0


@pytest.mark.parametrize(
    ("hk_type", "value", "unit"),
    [
        ("HKQuantityTypeIdentifierHeight", "1e30", "ft"),  # an exact factor
        ("HKQuantityTypeIdentifierHeartRate", "1e30", "/s"),
        ("HKQuantityTypeIdentifierBodyMass", "1e40", "mg"),  # through the UCUM library
        ("HKQuantityTypeIdentifierBodyTemperature", "1e400", "K"),
        ("HKQuantityTypeIdentifierBodyMass", "1e400", "g"),  # no conversion, but no float holds it
        ("HKQuantityTypeIdentifierHeartRate", "1e-400", "count/min"),  # nor this one (but 0)
        ("HKQuantityTypeIdentifierOxygenSaturation", "1e999999", "%"),
        ("HKQuantityTypeIdentifierOxygenSaturation", "1e400", "%"),
    ],
)
def test_a_value_out_of_range_is_a_problem_and_the_next_records_are_read(
    tmp_path: Path, hk_type: str, value: str, unit: str
) -> None:
    record = hk_record(hk_type, value, "2024-03-01 08:00:00 +0100", unit=unit)
    path = write(tmp_path / "export.xml", _APPLE_HEAD + record + _NEXT_HR + _APPLE_TAIL)
    result = ingest_file(path, "apple-health", PATIENT, recorded=RECORDED)
    [problem] = result.problems
    assert (problem.location, problem.severity) == ("HealthData/Record[1]", "error")
    assert "out of range" in problem.message
    if hk_type != "HKQuantityTypeIdentifierOxygenSaturation":  # that one is shown as a percentage
        assert repr(value) in problem.message
    assert result.counts["rejected"] == 1
    assert _observation_values(result) == [72]


@pytest.mark.parametrize(
    "encoding", ["bogus", "x" * 300, "rot13", "UTF-32", "utf-7", "shift_jis", "idna", "undefined", "punycode"]
)
@pytest.mark.parametrize("packaging", ["xml", "zip"])
def test_an_unusable_encoding_in_the_xml_declaration_is_one_fatal_problem(
    tmp_path: Path, encoding: str, packaging: str
) -> None:
    text = _APPLE_HEAD.replace('encoding="UTF-8"', f'encoding="{encoding}"') + _NEXT_HR + _APPLE_TAIL
    path = (
        write(tmp_path / "export.xml", text)
        if packaging == "xml"
        else write_apple_zip(tmp_path / "export.zip", text)
    )
    result = ingest_file(path, "apple-health", PATIENT, recorded=RECORDED)
    [problem] = result.problems
    assert (problem.file, problem.location, problem.severity) == (path.name, 1, "fatal")
    assert "encoding" in problem.message and encoding[:20] in problem.message
    assert result.bundles == []
