"""Quantity index values (https://hl7.org/fhir/R4/search.html#quantity)."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.search.types import RowSink, quantity

UCUM = "http://unitsofmeasure.org"


def index(elements: list[Any], fhir_type: str) -> list[tuple[Any, ...]]:
    sink: RowSink = {"quantity": []}
    quantity.values(elements, fhir_type, 4, 0, sink)
    return sink["quantity"]


def test_kg_and_pounds_share_the_gram_canon() -> None:
    (kg,) = index([{"value": 80, "system": UCUM, "code": "kg", "unit": "kg"}], "Quantity")
    (lb,) = index([{"value": 176.37, "system": UCUM, "code": "[lb_av]", "unit": "lb"}], "Quantity")
    assert kg[2:6] == (80.0, UCUM, "kg", "kg")
    assert kg[7] == lb[7] == "g"
    assert kg[6] == 80_000.0
    assert lb[6] == pytest.approx(80_000.0, rel=1e-4)


def test_celsius_and_fahrenheit_are_affine_to_kelvin() -> None:
    (c,) = index([{"value": 37, "system": UCUM, "code": "Cel"}], "Quantity")
    (f,) = index([{"value": 98.6, "system": UCUM, "code": "[degF]"}], "Quantity")
    assert c[7] == f[7] == "K"
    assert c[6] == pytest.approx(310.15)
    assert f[6] == pytest.approx(310.15)


def test_quantity_without_system_uses_a_ucum_code() -> None:
    (row,) = index([{"value": 5, "code": "mg"}], "Age")
    assert row[3] is None and row[6:] == (0.005, "g")


def test_quantity_of_another_system_has_no_canon() -> None:
    (row,) = index([{"value": 2, "system": "http://snomed.info/sct", "code": "258684004"}], "Quantity")
    assert row[6:] == (None, None)


def test_unparseable_ucum_code_has_no_canon() -> None:
    (row,) = index([{"value": 2, "system": UCUM, "code": "not a unit"}], "Quantity")
    assert row[6:] == (None, None)


def test_money_uses_the_iso_4217_system() -> None:
    assert index([{"value": 12.5, "currency": "EUR"}], "Money") == [
        (4, 0, 12.5, "urn:iso:std:iso:4217", "EUR", None, None, None)
    ]


def test_quantity_without_value_and_range_are_skipped() -> None:
    assert index([{"unit": "kg"}], "Quantity") == []
    assert index([{"low": {"value": 1}}], "Range") == []
