"""Number index values (https://hl7.org/fhir/R4/search.html#number)."""

from __future__ import annotations

from fhir_server.search.types import RowSink, number


def test_integers_and_decimals_become_floats() -> None:
    sink: RowSink = {"number": []}
    number.values([3, 0.25], "decimal", 5, 0, sink)
    assert sink["number"] == [(5, 0, 3.0), (5, 0, 0.25)]


def test_range_and_booleans_are_not_numbers() -> None:
    sink: RowSink = {"number": []}
    number.values([{"low": {"value": 1}}], "Range", 5, 0, sink)
    number.values([True], "*", 5, 0, sink)
    assert sink["number"] == []
