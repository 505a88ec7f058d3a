"""The value rows of idx_observation_value (search/observation_values.py): what $stats reads."""

from __future__ import annotations

from typing import Any

from fhir_server.search.index import index_rows

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def _coding(code: str, system: str = LOINC) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _values(resource: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (r["subject"], r["code"], r["grp"], r["value_code"], r["value"], r["unit"])
        for r in index_rows(resource).get("observation_value", [])
    ]


def _observation(**more: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": _coding("29463-7"),
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-01-01T10:00:00Z",
        "valueQuantity": {"value": 70, "system": UCUM, "code": "kg"},
        **more,
    }


def test_the_value_under_each_coding_of_the_code() -> None:
    obs = _observation(code={"coding": [{"system": LOINC, "code": "29463-7"}, {"code": "w"}], "text": "W"})
    rows = index_rows(obs)["observation_value"]
    assert _values(obs) == [
        ("Patient/p1", "29463-7", 0, "29463-7", 70.0, "kg"),
        ("Patient/p1", "w", 0, "w", 70.0, "kg"),
    ]
    assert rows[0]["effective"] == 1_704_103_200_000_000
    assert (rows[0]["canon_value"], rows[0]["canon_code"]) == (70_000.0, "g")


def test_a_panel_component_is_found_by_the_panel_and_by_its_own_code() -> None:
    obs = _observation(code=_coding("85354-9"), component=[{"code": _coding("x")}])
    del obs["valueQuantity"]
    obs["component"] = [
        {"code": _coding("8480-6"), "valueQuantity": {"value": 120, "code": "mm[Hg]", "system": UCUM}},
        {"code": _coding("8462-4"), "valueString": "not a quantity"},
        {"code": _coding("8462-4"), "valueQuantity": {"value": 80, "unit": "mmHg"}},
    ]
    assert _values(obs) == [
        ("Patient/p1", "85354-9", 1, "8480-6", 120.0, "mm[Hg]"),
        ("Patient/p1", "8480-6", 1, "8480-6", 120.0, "mm[Hg]"),
        ("Patient/p1", "85354-9", 3, "8462-4", 80.0, "mmHg"),
        ("Patient/p1", "8462-4", 3, "8462-4", 80.0, "mmHg"),
    ]


def test_no_rows_without_subject_quantity_or_when_entered_in_error() -> None:
    assert _values(_observation(status="entered-in-error")) == []
    assert _values({k: v for k, v in _observation().items() if k != "subject"}) == []
    assert _values(_observation(valueQuantity={"unit": "kg"})) == []
    assert _values({**_observation(), "valueString": "x", "valueQuantity": None}) == []


def test_subject_as_indexed_and_effective_start() -> None:
    obs = _observation(
        subject={"reference": "http://example.org/fhir/Patient/p1"},
        effectivePeriod={"start": "2024-01-01", "end": "2024-01-02"},
    )
    del obs["effectiveDateTime"]
    rows = index_rows(obs)["observation_value"]
    assert rows[0]["subject"] == "http://example.org/fhir/Patient/p1"
    assert rows[0]["effective"] == 1_704_067_200_000_000
    del obs["effectivePeriod"]
    assert index_rows(obs)["observation_value"][0]["effective"] is None
