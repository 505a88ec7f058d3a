"""HCGateway Health Connect records -> Observations (https://developer.android.com/health-and-fitness/guides/health-connect)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.pipeline import ingest_file
from tests.ingest.expectations import assert_observations, identifiers, validate_with_r4b
from tests.ingest.fixtures import HC_APP, PATIENT, health_connect_payload, long_csv, write

RECORDED = "2024-03-02T10:00:00Z"


def test_every_record_type_becomes_the_expected_observation(tmp_path: Path) -> None:
    payload, expected = health_connect_payload()
    result = ingest_file(write(tmp_path / "hc.json", payload), "health-connect", PATIENT, recorded=RECORDED)
    assert result.problems == []
    assert_observations(result, expected, PATIENT)
    assert validate_with_r4b(result) > len(expected)
    assert result.counts["skipped:distance"] == 1
    assert result.counts["skipped:sleepStage:1"] == 1


def test_the_recording_app_becomes_the_device(tmp_path: Path) -> None:
    payload, _ = health_connect_payload()
    result = ingest_file(write(tmp_path / "hc.json", payload), "health-connect", PATIENT, recorded=RECORDED)
    devices = {
        e["resource"]["deviceName"][0]["name"]
        for b in result.bundles
        for e in b["entry"]
        if e["resource"]["resourceType"] == "Device"
    }
    assert devices == {HC_APP}


def test_a_single_method_list_is_read_with_its_type_guessed(tmp_path: Path) -> None:
    payload, _ = health_connect_payload()
    result = ingest_file(write(tmp_path / "weight.json", payload["weight"]), "health-connect", PATIENT)
    assert [o["code"]["coding"][0]["code"] for o in result.resources_of("Observation")] == ["29463-7"]


def test_reingesting_gives_identical_conditional_creates(tmp_path: Path) -> None:
    payload, _ = health_connect_payload()
    path = write(tmp_path / "hc.json", payload)
    assert identifiers(ingest_file(path, "health-connect", PATIENT)) == identifiers(
        ingest_file(path, "health-connect", PATIENT)
    )


def test_bad_records_are_problems_at_their_json_path_and_good_ones_are_kept(tmp_path: Path) -> None:
    payload, _ = health_connect_payload()
    doc = {
        "weight": [
            payload["weight"][0],
            {
                "id": "w-2",
                "app": HC_APP,
                "start": "2024-03-01T06:40:00Z",
                "end": None,
                "data": {"weight": {"inStones": 11}},
            },
            {
                "id": "w-3",
                "app": HC_APP,
                "start": "2024-03-01T06:41:00Z",
                "end": None,
                "data": {"weight": {"inKilograms": "heavy"}},
            },
            "not a record",
        ],
        "heartRate": [
            {
                "id": "hr-9",
                "app": HC_APP,
                "start": "2024-03-01T07:00:00Z",
                "end": "2024-03-01T07:01:00Z",
                "data": {
                    "samples": [
                        {"time": "2024-03-01T07:00:00Z", "beatsPerMinute": 60},
                        {"time": "soon", "beatsPerMinute": 61},
                    ]
                },
            }
        ],
    }
    result = ingest_file(write(tmp_path / "hc.json", doc), "health-connect", PATIENT)
    where = {p.location: p.message for p in result.problems}
    assert set(where) == {"$.weight[1]", "$.weight[2]", "$.weight[3]", "$.heartRate[0].data.samples[1]"}
    assert "non-numeric" in where["$.weight[2]"]
    assert "date" in where["$.heartRate[0].data.samples[1]"]
    assert all(p.file == "hc.json" for p in result.problems)
    values = [o["valueQuantity"]["value"] for o in result.resources_of("Observation")]
    assert values == [70.2, 60]


@pytest.mark.parametrize(
    ("name", "content", "location"),
    [
        ("data.csv", long_csv()[0], 1),
        (
            "fitbit.json",
            {"activities-steps": [{"dateTime": "2024-03-01", "value": "1"}]},
            "$.activities-steps[0]",
        ),
    ],
)
def test_file_of_another_format_gives_problems_and_nothing_else(
    tmp_path: Path, name: str, content: object, location: object
) -> None:
    result = ingest_file(write(tmp_path / name, content), "health-connect", PATIENT)
    assert result.bundles == []
    assert result.problems[0].file == name
    assert result.problems[0].location == location


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bpm=st.lists(st.integers(min_value=25, max_value=230), min_size=1, max_size=20))
def test_heart_rate_samples_keep_their_values_and_zone(tmp_path: Path, bpm: list[int]) -> None:
    samples = [{"time": f"2024-03-01T07:{i:02d}:00Z", "beatsPerMinute": v} for i, v in enumerate(bpm)]
    rec = {
        "id": "x",
        "app": HC_APP,
        "start": "2024-03-01T07:00:00Z",
        "end": "2024-03-01T08:00:00Z",
        "data": {"samples": samples, "startZoneOffset": "-03:30"},
    }
    path = tmp_path / "hr.json"
    path.write_text(json.dumps({"heartRate": [rec]}))
    obs = ingest_file(path, "health-connect", PATIENT).resources_of("Observation")
    assert [o["valueQuantity"]["value"] for o in obs] == bpm
    assert [o["effectiveDateTime"] for o in obs] == [
        f"2024-03-01T03:{30 + i:02d}:00-03:30" for i in range(len(bpm))
    ]


def _hc_record(rec_id: str, start: str, end: str | None, data: dict) -> dict:
    return {"id": rec_id, "app": HC_APP, "start": start, "end": end, "data": data}


def test_values_times_and_stages_out_of_range_are_problems_and_the_next_records_are_read(
    tmp_path: Path,
) -> None:
    good = _hc_record("h-9", "2024-03-01T06:31:00Z", None, {"height": {"inMeters": 1.75}})
    doc = {
        "height": [
            _hc_record("h-1", "2024-03-01T06:30:00Z", None, {"height": {"inFeet": "1e30"}}),
            good,
        ],
        "weight": [_hc_record("w-1", "2024-03-01T06:30:00Z", None, {"weight": {"inKilograms": "1e400"}})],
        "heartRate": [
            _hc_record(
                "hr-1",
                "0001-01-01T00:00:00Z",
                None,
                {
                    "startZoneOffset": "-01:00",
                    "samples": [{"time": "0001-01-01T00:00:00+00:00", "beatsPerMinute": 60}],
                },
            )
        ],
        "sleepSession": [
            _hc_record(
                "sl-1",
                "2024-02-29T22:00:00Z",
                "2024-03-01T05:00:00Z",
                {
                    "stages": [
                        {
                            "startTime": "2024-02-29T22:00:00Z",
                            "endTime": "2024-02-29T23:00:00Z",
                            "stage": "STAGE",
                        }
                    ]
                },
            ),
            _hc_record(
                "sl-2",
                "2024-02-29T22:00:00Z",
                "2024-03-01T05:00:00Z",
                {
                    "stages": [
                        {"startTime": "2024-02-29T22:00:00Z", "endTime": "2024-02-29T23:00:00", "stage": 4}
                    ]
                },
            ),
        ],
    }
    text = json.dumps(doc).replace('"STAGE"', "1e400")  # an infinity as Python's json reads it
    result = ingest_file(write(tmp_path / "hc.json", text), "health-connect", PATIENT)
    where = {p.location: p.message for p in result.problems}
    assert set(where) == {
        "$.height[0]",
        "$.weight[0]",
        "$.heartRate[0]",
        "$.sleepSession[0]",
        "$.sleepSession[1]",
    }, where
    assert "out of range" in where["$.height[0]"] and "'1e30'" in where["$.height[0]"]
    assert "out of range" in where["$.weight[0]"]
    assert "OverflowError" in where["$.heartRate[0]"] and "OverflowError" in where["$.sleepSession[0]"]
    assert "time zone" in where["$.sleepSession[1]"]
    assert all(p.severity == "error" for p in result.problems)
    assert [o["valueQuantity"]["value"] for o in result.resources_of("Observation")] == [175]
