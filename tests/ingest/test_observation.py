"""Sample -> Observation with a deterministic identifier (https://hl7.org/fhir/R4/observation.html)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import given
from hypothesis import strategies as st

from ingest.device import DeviceInfo
from ingest.observation import Component, Sample, SampleError, entry, fhir_datetime, resolve

WATCH = DeviceInfo("test", "Watch", "Acme", "W1")


def _obs(sample: Sample, patient: str = "Patient/1", source: str = "test") -> dict:
    return entry(sample, source=source, patient_ref=patient).resource


def test_heart_rate_observation_has_every_vital_signs_element() -> None:
    e = entry(
        Sample("heart_rate", "2024-01-01T08:00:00+01:00", "72", "bpm", device=WATCH),
        source="test",
        patient_ref="Patient/1",
    )
    obs = e.resource
    assert obs["meta"] == {"profile": ["http://hl7.org/fhir/StructureDefinition/heartrate"]}
    assert obs["category"][0]["coding"][0]["code"] == "vital-signs"
    assert obs["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "8867-4",
        "display": "Heart rate",
    }
    assert obs["valueQuantity"] == {
        "value": 72,
        "unit": "/min",
        "system": "http://unitsofmeasure.org",
        "code": "/min",
    }
    assert obs["device"] == {"reference": WATCH.full_url}
    assert (
        e.as_dict()["request"]["ifNoneExist"]
        == f"identifier=urn:fhir-server:ingest|{obs['identifier'][0]['value']}"
    )
    get_fhir_model_class("Observation").model_validate(obs)


def test_identifier_depends_on_source_device_patient_type_time_and_value() -> None:
    base = Sample("heart_rate", "2024-01-01T08:00:00Z", 72, "/min", device=WATCH)
    ident = _obs(base)["identifier"][0]["value"]
    assert (
        _obs(Sample("heart_rate", "2024-01-01T08:00:00Z", "72", "bpm", device=WATCH))["identifier"][0][
            "value"
        ]
        == ident
    )
    variants = [
        _obs(base, source="other"),
        _obs(base, patient="Patient/2"),
        _obs(Sample("heart_rate", "2024-01-01T08:00:00Z", 72, "/min", device=DeviceInfo("test", "Ring"))),
        _obs(Sample("respiratory_rate", "2024-01-01T08:00:00Z", 72, "/min", device=WATCH)),
        _obs(Sample("heart_rate", "2024-01-01T08:00:01Z", 72, "/min", device=WATCH)),
        _obs(Sample("heart_rate", "2024-01-01T08:00:00Z", 73, "/min", device=WATCH)),
    ]
    assert ident not in {v["identifier"][0]["value"] for v in variants}


def test_software_version_does_not_change_identifiers() -> None:
    newer = DeviceInfo("test", "Watch", "Acme", "W1", software="2.0")
    a = _obs(Sample("heart_rate", "2024-01-01T08:00:00Z", 72, "/min", device=WATCH))
    b = _obs(Sample("heart_rate", "2024-01-01T08:00:00Z", 72, "/min", device=newer))
    assert a["identifier"] == b["identifier"]


def test_panel_needs_components_and_orders_them() -> None:
    obs = _obs(
        Sample(
            "bp",
            "2024-01-01",
            components=(Component("diastolic", 80, "mmHg"), Component("systolic", 120, "mmHg")),
        )
    )
    assert [c["code"]["coding"][0]["code"] for c in obs["component"]] == ["8480-6", "8462-4"]
    with pytest.raises(SampleError, match="components"):
        resolve(Sample("bp", "2024-01-01", 120, "mmHg"))
    with pytest.raises(SampleError, match="not a component"):
        resolve(Sample("bp", "2024-01-01", components=(Component("heart_rate", 1),)))


@pytest.mark.parametrize(
    ("sample", "words"),
    [
        (Sample("heart_rate", "2024-01-01", None), "missing value"),
        (Sample("heart_rate", "2024-01-01", -5), "negative"),
        (Sample("heart_rate", "2024-01-01", 5, "kg"), "does not fit"),
        (Sample("heart_rate", "2024-01-01T10:00:00Z", 5, end="2024-01-01T09:00:00Z"), "before start"),
        (Sample("heart_rate", "2024-02-30", 5), "invalid date"),
        (Sample("heart_rate", "", 5), "missing date"),
        (
            Sample("heart_rate", "2024-01-01", "1e30", "/s"),
            r"value '1e30' for 'heart_rate' is out of range \(conv",
        ),
        (Sample("body_height", "2024-01-01", "1e30", "ft"), "out of range"),
        (Sample("body_temperature", "2024-01-01", "1e400", "K"), "out of range"),
        (Sample("heart_rate", "2024-01-01", "1e400"), "value '1e400' for 'heart_rate' is out of range"),
        (Sample("heart_rate", "2024-01-01", Decimal("1E+400")), "out of range"),
        (Sample("heart_rate", "2024-01-01", "1e-400"), "out of range"),
        (
            Sample("blood_pressure", "2024-01-01", components=(Component("systolic_bp", "1e400", "mmHg"),)),
            "value '1e400' for 'systolic_bp' is out of range",
        ),
    ],
)
def test_unusable_samples_raise_a_sample_error_that_says_why(sample: Sample, words: str) -> None:
    with pytest.raises(SampleError, match=words):
        resolve(sample)


def test_period_with_equal_ends_is_a_point_in_time() -> None:
    obs = _obs(Sample("steps_interval", "2024-01-01T08:00:00Z", 5, end="2024-01-01T08:00:00Z"))
    assert obs["effectiveDateTime"] == "2024-01-01T08:00:00Z"


@pytest.mark.parametrize(
    ("text", "fhir"),
    [
        ("2024-01-01", "2024-01-01"),
        ("2024", "2024"),
        ("2024-01-01T08:00:00.123Z", "2024-01-01T08:00:00.123Z"),
        ("2024-01-01 08:00:00 +0100", "2024-01-01T08:00:00+01:00"),
        ("2024-01-01T08:00+05:30", "2024-01-01T08:00:00+05:30"),
    ],
)
def test_fhir_datetime_keeps_precision_and_zone(text: str, fhir: str) -> None:
    assert fhir_datetime(text) == fhir


@given(
    st.datetimes(min_value=datetime(1800, 1, 1), max_value=datetime(2200, 1, 1)),
    st.integers(min_value=-12 * 60, max_value=14 * 60),
)
def test_any_aware_iso_time_is_kept_as_the_same_instant_and_offset(moment: datetime, minutes: int) -> None:
    aware = moment.replace(tzinfo=timezone(timedelta(minutes=minutes)))
    out = fhir_datetime(aware.isoformat())
    assert datetime.fromisoformat(out) == aware
    assert datetime.fromisoformat(out).utcoffset() == aware.utcoffset()


@given(st.datetimes(min_value=datetime(1800, 1, 1), max_value=datetime(2200, 1, 1)))
def test_naive_times_need_a_zone(moment: datetime) -> None:
    with pytest.raises(SampleError, match="zone"):
        fhir_datetime(moment.isoformat(timespec="seconds"))
    assert fhir_datetime(moment.isoformat(timespec="seconds"), UTC).endswith("+00:00")


_TIMES = st.sampled_from(
    [
        "2024-01-01",
        "2024-01-01T08:00:00Z",
        "2024-01-01T09:00:00+05:00",
        "2024-01-01T08:30:00",
        "2024-01-01 08:00:00 +0100",
        "2024-01-01 08:00:00",
        "0001-01-01T00:00:00",
        "9999-12-31T23:59:59-14:00",
        "",
        "soon",
    ]
)
_VALUES = st.one_of(
    st.sampled_from(["72", "1e30", "1e400", "-1e400", "1e-400", "1e999999", "nan", "inf"]),
    st.from_regex(r"\A[+-]?(\d{1,30}(\.\d{0,30})?|\.\d{1,30})([eE][+-]?\d{1,7})?\Z"),
    st.text(max_size=12),
    st.integers(),
    st.floats(),
    st.decimals(),
)


@given(
    st.sampled_from(["heart_rate", "body_weight", "body_height", "body_temperature", "sleep_rem", "bmi"]),
    _VALUES,
    st.sampled_from([None, "lb", "g", "mg", "ft", "m", "degF", "K", "h", "s", "/s", "count"]),
    _TIMES,
    st.one_of(st.none(), _TIMES),
    st.sampled_from([None, UTC, timezone(timedelta(hours=-7))]),
)
def test_any_sample_resolves_or_raises_a_sample_error(
    metric: str, value: object, unit: str | None, start: str, end: str | None, tz: timezone | None
) -> None:
    try:
        resolved = resolve(Sample(metric, start, value, unit, end), tz)  # type: ignore[arg-type]
    except SampleError:
        return
    assert resolved.value is not None and math.isfinite(resolved.value)
