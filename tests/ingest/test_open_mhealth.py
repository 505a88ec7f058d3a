"""Open mHealth data points -> Observations (https://www.openmhealth.org/documentation/#/schema-docs/schema-library)."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.pipeline import ingest_file
from tests.ingest.expectations import assert_observations, identifiers, validate_with_r4b
from tests.ingest.fixtures import PATIENT, long_csv, open_mhealth_points, write

RECORDED = "2024-03-02T10:00:00Z"


def test_every_schema_becomes_the_expected_observation(tmp_path: Path) -> None:
    points, expected = open_mhealth_points()
    result = ingest_file(write(tmp_path / "omh.json", points), "open-mhealth", PATIENT, recorded=RECORDED)
    assert result.problems == []
    assert_observations(result, expected, PATIENT)
    assert validate_with_r4b(result) > len(expected)
    assert result.counts["skipped:physical-activity"] == 1


def test_ndjson_and_wrapped_documents_read_the_same(tmp_path: Path) -> None:
    points, expected = open_mhealth_points()
    ndjson = write(tmp_path / "omh.jsonl", "\n".join(json.dumps(p) for p in points) + "\n")
    wrapped = write(tmp_path / "wrapped.json", {"data_points": points})
    for path in (ndjson, wrapped):
        result = ingest_file(path, "open-mhealth", PATIENT, recorded=RECORDED)
        assert result.problems == []
        assert_observations(result, expected, PATIENT)


def test_reingesting_gives_identical_conditional_creates(tmp_path: Path) -> None:
    points, _ = open_mhealth_points()
    path = write(tmp_path / "omh.json", points)
    assert identifiers(ingest_file(path, "open-mhealth", PATIENT)) == identifiers(
        ingest_file(path, "open-mhealth", PATIENT)
    )


def test_bad_data_points_are_problems_at_their_path_and_good_ones_are_kept(tmp_path: Path) -> None:
    points, _ = open_mhealth_points()
    good = points[0]
    no_time = json.loads(json.dumps(points[1]))
    del no_time["body"]["effective_time_frame"]
    bad_unit = json.loads(json.dumps(points[5]))
    bad_unit["body"]["body_weight"]["unit"] = "furlong"
    result = ingest_file(
        write(tmp_path / "omh.json", [good, no_time, bad_unit, {"header": {}}]), "open-mhealth", PATIENT
    )
    where = {p.location: p.message for p in result.problems}
    assert set(where) == {"$[1]", "$[2].body.body_weight", "$[3]"}
    assert "unit" in where["$[2].body.body_weight"]
    assert [o["code"]["coding"][0]["code"] for o in result.resources_of("Observation")] == ["8867-4"]


def test_file_of_another_format_is_a_fatal_problem(tmp_path: Path) -> None:
    for name, content, location in (("data.csv", long_csv()[0], 1), ("fitbit.json", {"sleep": []}, "$")):
        result = ingest_file(write(tmp_path / name, content), "open-mhealth", PATIENT)
        assert result.bundles == []
        [problem] = result.problems
        assert (problem.file, problem.location, problem.severity) == (name, location, "fatal")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(celsius=st.integers(min_value=340, max_value=420), fahrenheit=st.booleans())
def test_temperature_units_map_to_ucum(tmp_path: Path, celsius: int, fahrenheit: bool) -> None:
    points, _ = open_mhealth_points()
    point = json.loads(json.dumps(points[3]))
    value = celsius / 10
    point["body"]["body_temperature"] = {"value": value, "unit": "F" if fahrenheit else "C"}
    [obs] = ingest_file(write(tmp_path / "t.json", [point]), "open-mhealth", PATIENT).resources_of(
        "Observation"
    )
    assert obs["valueQuantity"]["code"] == ("[degF]" if fahrenheit else "Cel")
    assert obs["valueQuantity"]["value"] == value


def test_durations_and_values_out_of_range_are_problems_and_the_next_points_are_read(tmp_path: Path) -> None:
    points, _ = open_mhealth_points()
    good = points[0]

    def steps(n: int, duration: str) -> dict:
        frame = {
            "time_interval": {
                "start_date_time": "2024-03-01T08:00:00Z",
                "duration": {"value": "D", "unit": "sec"},
            }
        }
        point = json.loads(json.dumps(good))
        point["header"]["schema_id"]["name"] = "step-count"
        point["header"]["id"] = f"00000000-0000-4000-8000-9{n:011d}"
        point["body"] = {"step_count": 10, "effective_time_frame": frame}
        return json.loads(json.dumps(point).replace('"D"', duration))

    huge_value = json.loads(json.dumps(good))
    huge_value["body"]["heart_rate"]["value"] = "1e400"
    doc = [steps(1, "1e400"), steps(2, "1e300"), steps(3, "NaN"), huge_value, good]
    result = ingest_file(write(tmp_path / "omh.json", doc), "open-mhealth", PATIENT)
    where = {p.location: p.message for p in result.problems}
    assert set(where) == {"$[0]", "$[1]", "$[2]", "$[3].body.heart_rate"}, where
    assert "OverflowError" in where["$[0]"] and "OverflowError" in where["$[1]"]
    assert "out of range" in where["$[3].body.heart_rate"]
    assert [o["code"]["coding"][0]["code"] for o in result.resources_of("Observation")] == ["8867-4"]
