"""Measure -> LOINC, UCUM unit, category and vital-signs profile (https://hl7.org/fhir/R4/observation-vitalsigns.html)."""

from __future__ import annotations

import pytest

from ingest import mapping, units
from ingest.mapping import Measure

VS = "http://hl7.org/fhir/StructureDefinition/"


@pytest.mark.parametrize(
    ("key", "code", "unit", "category", "profile"),
    [
        ("heart_rate", "8867-4", "/min", "vital-signs", VS + "heartrate"),
        ("respiratory_rate", "9279-1", "/min", "vital-signs", VS + "resprate"),
        ("oxygen_saturation", "2708-6", "%", "vital-signs", VS + "oxygensat"),
        ("body_temperature", "8310-5", "Cel", "vital-signs", VS + "bodytemp"),
        ("body_height", "8302-2", "cm", "vital-signs", VS + "bodyheight"),
        ("body_weight", "29463-7", "kg", "vital-signs", VS + "bodyweight"),
        ("bmi", "39156-5", "kg/m2", "vital-signs", VS + "bmi"),
        ("blood_pressure", "85354-9", "mm[Hg]", "vital-signs", VS + "bp"),
        ("systolic_bp", "8480-6", "mm[Hg]", "vital-signs", VS + "vitalsigns"),
        ("diastolic_bp", "8462-4", "mm[Hg]", "vital-signs", VS + "vitalsigns"),
        ("steps", "41950-7", "{steps}", "activity", None),
        ("steps_interval", "55423-8", "{steps}", "activity", None),
        ("blood_glucose", "2339-0", "mg/dL", "laboratory", None),
        ("blood_glucose_molar", "15074-8", "mmol/L", "laboratory", None),
        ("hba1c", "4548-4", "%", "laboratory", None),
        ("sleep_duration", "93832-4", "min", "activity", None),
        ("sleep_deep", "93831-6", "min", "activity", None),
        ("sleep_light", "93830-8", "min", "activity", None),
        ("sleep_rem", "93829-0", "min", "activity", None),
    ],
)
def test_each_measure_has_its_loinc_code_ucum_unit_category_and_profile(
    key: str, code: str, unit: str, category: str, profile: str | None
) -> None:
    m = mapping.measure(key)
    assert (m.code, m.unit, m.category) == (code, unit, category)
    assert m.profiles == ([profile] if profile else [])
    assert mapping.measure_for_code(code) is m
    assert all(units.is_ucum(u) for u in m.units)


def test_spo2_carries_the_pulse_oximetry_code_too() -> None:
    codes = [c["code"] for c in mapping.measure("spo2").codeable_concept()["coding"]]
    assert codes == ["2708-6", "59408-5"]


def test_blood_pressure_panel_has_systolic_and_diastolic_components() -> None:
    assert mapping.measure("bp").components == ("systolic_bp", "diastolic_bp")


@pytest.mark.parametrize(
    ("alias", "key"),
    [
        ("HR", "heart_rate"),
        ("pulse", "heart_rate"),
        ("SpO2", "oxygen_saturation"),
        ("Body-Weight", "body_weight"),
    ],
)
def test_metric_aliases_are_case_insensitive(alias: str, key: str) -> None:
    assert mapping.measure(alias).key == key


def test_glucose_unit_picks_the_loinc_code() -> None:
    assert mapping.resolve("glucose", "mg/dL")[0].code == "2339-0"
    assert mapping.resolve("glucose", "mmol<180.1558800000541>/L")[0].code == "15074-8"
    assert mapping.resolve("blood_glucose_molar", "mg/dl")[0].code == "2339-0"


def test_unknown_metric_raises() -> None:
    with pytest.raises(mapping.UnknownMeasure, match="wibble"):
        mapping.measure("wibble")


def test_registering_a_measure_makes_it_resolvable() -> None:
    m = Measure(
        "creatinine_test_only",
        "2160-0",
        "Creatinine [Mass/volume] in Serum or Plasma",
        ("mg/dL",),
        "laboratory",
    )
    mapping.register(m, "creat_test_only")
    try:
        assert mapping.resolve("creat_test_only", "mg/dl") == (m, "mg/dL")
        assert mapping.measure_for_code("2160-0") is m
    finally:
        del mapping.MEASURES[m.key]
        del mapping.METRIC_ALIASES["creat_test_only"]
        mapping._BY_CODE.pop("2160-0", None)
        mapping._resolve.cache_clear()
