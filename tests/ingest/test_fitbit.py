"""Fitbit Web API JSON -> Observations (https://dev.fitbit.com/build/reference/web-api/)."""

from __future__ import annotations

import json
from datetime import timedelta, timezone
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.pipeline import ingest_file
from tests.ingest.expectations import assert_observations, identifiers, validate_with_r4b
from tests.ingest.fixtures import PATIENT, apple_every_measure, fitbit_payload, write

RECORDED = "2024-03-02T10:00:00Z"
PLUS_ONE = {"timezone": "+01:00"}


def test_every_endpoint_becomes_the_expected_observations(tmp_path: Path) -> None:
    payload, expected = fitbit_payload()
    result = ingest_file(
        write(tmp_path / "fitbit.json", payload), "fitbit", PATIENT, options=PLUS_ONE, recorded=RECORDED
    )
    assert result.problems == []
    assert_observations(result, expected, PATIENT)
    assert validate_with_r4b(result) > len(expected)


def test_the_tracker_becomes_the_device(tmp_path: Path) -> None:
    payload, _ = fitbit_payload()
    result = ingest_file(write(tmp_path / "fitbit.json", payload), "fitbit", PATIENT, options=PLUS_ONE)
    [device] = {
        e["fullUrl"]: e["resource"]
        for b in result.bundles
        for e in b["entry"]
        if e["resource"]["resourceType"] == "Device"
    }.values()
    assert device["manufacturer"] == "Fitbit"
    assert device["modelNumber"] == "Charge 6"


def test_default_tz_of_the_run_is_used_when_no_option_is_given(tmp_path: Path) -> None:
    payload, expected = fitbit_payload()
    result = ingest_file(
        write(tmp_path / "f.json", payload), "fitbit", PATIENT, default_tz=timezone(timedelta(hours=1))
    )
    assert result.problems == []
    assert len(result.resources_of("Observation")) == len(expected)


def test_without_a_zone_timed_values_are_dropped_with_one_problem_and_daily_values_kept(
    tmp_path: Path,
) -> None:
    payload, expected = fitbit_payload()
    result = ingest_file(write(tmp_path / "fitbit.json", payload), "fitbit", PATIENT)
    [problem] = result.problems
    assert problem.file == "fitbit.json" and "time zone" in problem.message
    kept = [
        (o["code"]["coding"][0]["code"], o["effectiveDateTime"]) for o in result.resources_of("Observation")
    ]
    assert kept == [(x.code, x.start) for x in expected if len(x.start) == 10]


def test_reingesting_gives_identical_conditional_creates(tmp_path: Path) -> None:
    payload, _ = fitbit_payload()
    path = write(tmp_path / "fitbit.json", payload)
    first = ingest_file(path, "fitbit", PATIENT, options=PLUS_ONE)
    assert identifiers(first) == identifiers(ingest_file(path, "fitbit", PATIENT, options=PLUS_ONE))


def test_malformed_sections_are_problems_at_their_path_and_other_sections_are_kept(tmp_path: Path) -> None:
    payload, _ = fitbit_payload()
    doc = {
        "activities-steps": [
            {"dateTime": "2024-03-01", "value": "lots"},
            {"dateTime": "2024-03-02", "value": "7000"},
        ],
        "weight": [{"date": "2024-03-01"}],
        "br": payload["br"],
    }
    result = ingest_file(write(tmp_path / "fitbit.json", doc), "fitbit", PATIENT, options=PLUS_ONE)
    where = {p.location: p.message for p in result.problems}
    assert set(where) == {"$['activities-steps'][0]", "$['weight'][0]"}
    assert "non-numeric" in where["$['activities-steps'][0]"]
    codes = [
        (o["code"]["coding"][0]["code"], o["valueQuantity"]["value"])
        for o in result.resources_of("Observation")
    ]
    assert codes == [("41950-7", 7000), ("9279-1", 14.8)]


def test_file_of_another_format_is_a_fatal_problem(tmp_path: Path) -> None:
    for name, content, location in (
        ("export.xml", apple_every_measure()[0], 1),
        ("hc.json", {"heartRate": [{"id": "x", "data": {}}]}, "$"),
    ):
        result = ingest_file(write(tmp_path / name, content), "fitbit", PATIENT)
        assert result.bundles == []
        [problem] = result.problems
        assert (problem.file, problem.location, problem.severity) == (name, location, "fatal")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.integers(min_value=30, max_value=220), min_size=1, max_size=60))
def test_intraday_heart_rate_keeps_every_minute(tmp_path: Path, values: list[int]) -> None:
    doc = {
        "activities-heart": [{"dateTime": "2024-03-01", "value": {}}],
        "activities-heart-intraday": {
            "dataset": [{"time": f"10:{i:02d}:00", "value": v} for i, v in enumerate(values)],
            "datasetInterval": 1,
            "datasetType": "minute",
        },
    }
    obs = ingest_file(
        write(tmp_path / "hr.json", doc), "fitbit", PATIENT, options={"timezone": "-07:00"}
    ).resources_of("Observation")
    assert [(o["effectiveDateTime"], o["valueQuantity"]["value"]) for o in obs] == [
        (f"2024-03-01T10:{i:02d}:00-07:00", v) for i, v in enumerate(values)
    ]


def test_times_and_durations_out_of_range_are_problems_and_other_entries_are_kept(tmp_path: Path) -> None:
    doc = {
        "activities-steps": [{"dateTime": "9999-12-31", "value": "10"}],
        "activities-steps-intraday": {
            "dataset": [{"time": "23:58:00", "value": 7}, {"time": "23:59:00", "value": 8}],
            "datasetInterval": 1,
            "datasetType": "minute",
        },
        "sleep": [
            {
                "startTime": "2024-02-29T23:00:00.000",
                "endTime": "2024-03-01T06:00:00.000",
                "minutesAsleep": 390,
                "levels": {
                    "data": [{"dateTime": "2024-02-29T23:00:00.000", "level": "deep", "seconds": "S"}]
                },
            }
        ],
    }
    text = json.dumps(doc).replace('"S"', "1e400")  # an infinity as Python's json reads it
    result = ingest_file(write(tmp_path / "fitbit.json", text), "fitbit", PATIENT, options=PLUS_ONE)
    where = {p.location: p.message for p in result.problems}
    assert set(where) == {"$['activities-steps-intraday'].dataset[1]", "$['sleep'][0]"}, where
    assert all("OverflowError" in m for m in where.values())
    kept = [
        (o["code"]["coding"][0]["code"], o["valueQuantity"]["value"])
        for o in result.resources_of("Observation")
    ]
    assert kept == [("41950-7", 10), ("55423-8", 7), ("93832-4", 390)]
