"""CSV (long, wide, declared mapping) -> Observations -> CSV (https://www.rfc-editor.org/rfc/rfc4180)."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import mapping
from ingest.csv_format import export_csv
from ingest.pipeline import ingest_file
from ingest.report import IngestResult
from tests.ingest.expectations import assert_observations, identifiers, validate_with_r4b
from tests.ingest.fixtures import (
    PATIENT,
    VS,
    Expected,
    apple_every_measure,
    bad_long_csv,
    long_csv,
    wide_csv,
    write,
)

RECORDED = "2024-03-02T10:00:00Z"


def _ingest(tmp_path: Path, text: str, name: str = "data.csv", **kw: Any) -> IngestResult:
    return ingest_file(write(tmp_path / name, text), "csv", PATIENT, recorded=RECORDED, **kw)


def test_long_csv_with_every_measure_becomes_the_expected_observations(tmp_path: Path) -> None:
    text, expected = long_csv()
    result = _ingest(tmp_path, text)
    assert result.problems == []
    assert_observations(result, expected, PATIENT)
    assert validate_with_r4b(result) == len(expected) + 1  # + the Provenance


def test_wide_csv_with_units_in_headers_becomes_the_expected_observations(tmp_path: Path) -> None:
    text, expected = wide_csv()
    result = _ingest(tmp_path, text)
    assert result.problems == []
    assert_observations(result, expected, PATIENT)
    validate_with_r4b(result)


def test_reingesting_gives_identical_conditional_creates(tmp_path: Path) -> None:
    text, _ = long_csv()
    first, again = _ingest(tmp_path, text), _ingest(tmp_path, text, name="renamed.csv")
    assert identifiers(first) == identifiers(again)
    assert first.bundles[0]["entry"][:-1] == again.bundles[0]["entry"][:-1]  # all but the Provenance


def test_patient_column_sets_each_row_subject(tmp_path: Path) -> None:
    text = "date,metric,value,unit,patient\n2024-03-01,steps,10,{steps},a\n2024-03-01,steps,10,{steps},Patient/b\n"
    result = _ingest(tmp_path, text)
    subjects = [o["subject"]["reference"] for o in result.resources_of("Observation")]
    assert subjects == ["Patient/a", "Patient/b"]
    assert len(set(identifiers(result))) == 3  # two Observations and the Provenance


def test_bad_rows_are_problems_naming_file_and_line_and_only_good_rows_are_kept(tmp_path: Path) -> None:
    text, bad = bad_long_csv()
    result = _ingest(tmp_path, text, name="vitals.csv")
    by_line = {p.location: p for p in result.problems}
    assert set(by_line) == set(bad)
    for line, word in bad.items():
        assert by_line[line].file == "vitals.csv"
        assert by_line[line].severity == "error"
        assert word in by_line[line].message, by_line[line]
    obs = result.resources_of("Observation")
    assert [(o["effectiveDateTime"], o["valueQuantity"]["value"]) for o in obs] == [
        ("2024-03-01T08:00:00Z", 72),
        ("2024-03-01T08:01:00Z", 74),
        ("2024-03-01T08:07:00Z", 70.1),
    ]
    assert result.counts["rejected"] == len(bad)


def test_timezone_option_makes_zoneless_times_valid(tmp_path: Path) -> None:
    result = _ingest(
        tmp_path,
        "date,metric,value,unit\n2024-03-01T08:06:00,heart_rate,77,/min\n",
        default_tz=timezone(timedelta(hours=2)),
    )
    assert result.problems == []
    assert result.resources_of("Observation")[0]["effectiveDateTime"] == "2024-03-01T08:06:00+02:00"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("export.xml", apple_every_measure()[0]),
        ("fitbit.json", '{"activities-heart": [{"dateTime": "2024-03-01", "value": {}}]}'),
        ("export.zip", b"PK\x03\x04\x14\x00\x00\x00\x08\x00\xff\xfe\x00\x80binary"),
    ],
)
def test_file_of_another_format_is_a_fatal_problem_at_line_1(
    tmp_path: Path, name: str, content: str | bytes
) -> None:
    result = ingest_file(write(tmp_path / name, content), "csv", PATIENT)
    assert result.bundles == []
    [problem] = result.problems
    assert (problem.file, problem.location, problem.severity) == (name, 1, "fatal")


def test_declared_mapping_reads_a_vendor_layout(tmp_path: Path) -> None:
    text = "When;Pulse;Kilos;Note\n01/03/2024 08:00;64;70,5;x\n02/03/2024 08:00;66;;y\n"
    text = text.replace("70,5", "70.5")
    decl = {
        "layout": "wide",
        "delimiter": ";",
        "date_column": "When",
        "date_format": "%d/%m/%Y %H:%M",
        "timezone": "+01:00",
        "device": "Clinic scale",
        "columns": {"Pulse": {"metric": "heart_rate"}, "Kilos": {"metric": "body_weight", "unit": "kg"}},
    }
    result = _ingest(tmp_path, text, options={"mapping": decl})
    assert [p.message for p in result.problems] == ["column 'Note' is not in the column mapping; ignored"]
    assert_observations(
        result,
        [
            Expected("8867-4", "2024-03-01T08:00:00+01:00", 64, "/min", profile=VS + "heartrate"),
            Expected("29463-7", "2024-03-01T08:00:00+01:00", 70.5, "kg", profile=VS + "bodyweight"),
            Expected("8867-4", "2024-03-02T08:00:00+01:00", 66, "/min", profile=VS + "heartrate"),
        ],
        PATIENT,
    )
    [device] = {
        e["fullUrl"]: e["resource"]
        for b in result.bundles
        for e in b["entry"]
        if e["resource"]["resourceType"] == "Device"
    }.values()
    assert device["deviceName"][0]["name"] == "Clinic scale"


def test_declared_long_mapping_renames_columns_and_metrics(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    decl = {
        "layout": "long",
        "date_column": "t",
        "metric_column": "what",
        "value_column": "v",
        "unit_column": "u",
        "metrics": {"Puls": "heart_rate", "Gewicht": "body_weight"},
    }
    mapping_file = write(tmp_path_factory.mktemp("m") / "mapping.json", json.dumps(decl))
    text = "t,what,v,u\n2024-03-01T08:00:00Z,Puls,60,bpm\n2024-03-01T08:00:00Z,Gewicht,71,kg\n"
    result = _ingest(tmp_path, text, options={"mapping_file": str(mapping_file)})
    assert result.problems == []
    assert [o["code"]["coding"][0]["code"] for o in result.resources_of("Observation")] == [
        "8867-4",
        "29463-7",
    ]


@pytest.mark.parametrize(
    ("decl", "where"),
    [
        ({"layout": "sideways"}, "mapping:/layout"),
        ({"layout": "wide"}, "mapping:/"),
        ({"layout": "wide", "columns": {"Pulse": {"unit": "bpm"}}}, "mapping:/columns/Pulse"),
        ({"layout": "long", "timezone": "CET"}, "mapping:/timezone"),
        ({"layout": "long", "colour": "blue"}, "mapping:/"),
    ],
)
def test_invalid_declared_mapping_is_rejected_by_its_json_schema(
    tmp_path: Path, decl: dict, where: str
) -> None:
    result = _ingest(
        tmp_path, "date,metric,value,unit\n2024-03-01,steps,1,{steps}\n", options={"mapping": decl}
    )
    assert result.bundles == []
    assert result.problems and all(p.severity == "fatal" for p in result.problems)
    assert where in [p.location for p in result.problems]


def test_long_csv_round_trips_exactly(tmp_path: Path) -> None:
    text, _ = long_csv()
    result = _ingest(tmp_path, text)
    assert export_csv(result.resources_of("Observation")) == text


def test_wide_csv_round_trips_exactly(tmp_path: Path) -> None:
    text, _ = wide_csv()
    result = _ingest(tmp_path, text)
    assert export_csv(result.resources_of("Observation"), "wide") == text.replace("(lb)", "([lb_av])")


def test_export_leaves_out_observations_no_measure_knows() -> None:
    alien = {
        "resourceType": "Observation",
        "code": {"coding": [{"system": "http://loinc.org", "code": "0000-0"}]},
    }
    assert export_csv([alien]) == "date,metric,value,unit\n"


# --- property: CSV -> FHIR -> CSV is lossless ------------------------------------------------------

_SIMPLE = sorted(k for k, m in mapping.MEASURES.items() if not m.components)


@st.composite
def _number(draw: st.DrawFn) -> str:
    whole = draw(st.integers(min_value=0, max_value=99_999))
    if draw(st.booleans()):
        return str(whole)
    frac = draw(st.integers(min_value=0, max_value=99)) * 10 + draw(st.integers(min_value=1, max_value=9))
    return f"{whole}.{frac:03d}".rstrip("0")


_moments = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1)).map(
    lambda d: d.replace(microsecond=0)
)
_zones = st.integers(min_value=-12 * 4, max_value=14 * 4).map(lambda q: timezone(timedelta(minutes=15 * q)))


@st.composite
def _date_cell(draw: st.DrawFn) -> str:
    start = draw(_moments).replace(tzinfo=draw(_zones))
    kind = draw(st.sampled_from(["date", "instant", "period"]))
    if kind == "date":
        return start.date().isoformat()
    if kind == "instant":
        return start.isoformat()
    end = start + timedelta(seconds=draw(st.integers(min_value=1, max_value=86_400)))
    return f"{start.isoformat()}/{end.isoformat()}"


@st.composite
def _long_row(draw: st.DrawFn) -> tuple[str, ...]:
    date = draw(_date_cell())
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        value = f"{draw(st.integers(min_value=60, max_value=250))}/{draw(st.integers(min_value=30, max_value=150))}"
        return (date, "blood_pressure", value, "mm[Hg]")
    key = draw(st.sampled_from(_SIMPLE))
    m = mapping.MEASURES[key]
    key = mapping.resolve(key, m.unit)[0].key
    return (date, key, draw(_number()), draw(st.sampled_from(mapping.MEASURES[key].units)))


def _csv_text(header: list[str], rows: list[tuple[str, ...]]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return out.getvalue()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(_long_row(), min_size=1, max_size=25, unique=True), with_patient=st.booleans())
def test_any_long_csv_round_trips_row_for_row(
    tmp_path: Path, rows: list[tuple[str, ...]], with_patient: bool
) -> None:
    if with_patient:
        rows = [(*r, f"p{i % 3}") for i, r in enumerate(rows)]
    header = ["date", "metric", "value", "unit", *(["patient"] if with_patient else [])]
    text = _csv_text(header, rows)
    result = _ingest(tmp_path, text, batch_size=7)
    assert result.problems == []
    assert export_csv(result.resources_of("Observation"), include_patient=with_patient) == text


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    dates=st.lists(_date_cell(), min_size=1, max_size=8, unique=True),
    metrics=st.lists(
        st.sampled_from(["heart_rate", "body_weight", "oxygen_saturation", "steps"]),
        min_size=1,
        max_size=4,
        unique=True,
    ),
    data=st.data(),
)
def test_any_wide_csv_round_trips_cell_for_cell(
    tmp_path: Path, dates: list[str], metrics: list[str], data: st.DataObject
) -> None:
    rows = []
    for date in dates:
        cells = [data.draw(st.one_of(st.just(""), _number())) for _ in metrics]
        if not any(cells):
            cells[0] = "1"
        rows.append((date, *cells))
    text = _csv_text(["date", *metrics], rows)
    result = _ingest(tmp_path, text)
    assert result.problems == []
    back = list(csv.DictReader(io.StringIO(export_csv(result.resources_of("Observation"), "wide"))))
    original = list(csv.DictReader(io.StringIO(text)))
    assert [{k: v for k, v in r.items() if v} for r in back] == [
        {k: v for k, v in r.items() if v} for r in original
    ]


def test_values_out_of_range_are_problems_at_their_line_and_the_next_rows_are_read(tmp_path: Path) -> None:
    text = (
        "date,metric,value,unit\n"
        "2024-03-01T08:00:00Z,body_height,1e30,ft\n"  # line 2: needs a conversion
        "2024-03-01T08:00:00Z,body_temperature,1e400,K\n"
        "2024-03-01T08:00:00Z,heart_rate,1e400,/min\n"  # no conversion, but no float holds it
        "2024-03-01T08:00:00Z,blood_pressure,1e400/80,mmHg\n"
        "2024-03-01T08:00:00Z,heart_rate,72,/min\n"
    )
    result = _ingest(tmp_path, text)
    by_line = {p.location: p.message for p in result.problems}
    assert set(by_line) == {2, 3, 4, 5}
    assert all("out of range" in m for m in by_line.values()), by_line
    assert "'1e30'" in by_line[2] and "'1e400'" in by_line[4]
    assert result.counts["rejected"] == 4
    assert [o["valueQuantity"]["value"] for o in result.resources_of("Observation")] == [72]
