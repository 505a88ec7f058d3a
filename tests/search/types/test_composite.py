"""Composite index values (https://hl7.org/fhir/R4/search.html#composite)."""

from __future__ import annotations

from typing import Any

from fhir_server.search.types import RowSink, composite, quantity, token

COMPONENTS = (
    composite.ComponentPlan("code", "Observation", token.values, "token"),
    composite.ComponentPlan("value.as(Quantity)", "Observation", quantity.values, "quantity"),
)


def index(elements: list[Any], first_grp: int = 1) -> tuple[RowSink, int]:
    sink: RowSink = {"token": [], "quantity": []}
    root = {"resourceType": "Observation", "component": elements}
    next_grp = composite.values(elements, "Observation.component", 30, first_grp, sink, COMPONENTS, root)
    return sink, next_grp


def test_each_element_gets_its_own_grp_under_the_composite_param() -> None:
    sink, next_grp = index(
        [
            {"code": {"coding": [{"code": "a"}]}, "valueQuantity": {"value": 1}},
            {"code": {"coding": [{"code": "b"}]}, "valueQuantity": {"value": 2}},
        ]
    )
    assert sink["token"] == [(30, 1, None, "a", None), (30, 2, None, "b", None)]
    assert [(r[0], r[1], r[2]) for r in sink["quantity"]] == [(30, 1, 1.0), (30, 2, 2.0)]
    assert next_grp == 3


def test_element_missing_a_component_writes_nothing_but_keeps_its_number() -> None:
    sink, next_grp = index(
        [
            {"code": {"coding": [{"code": "a"}]}, "valueString": "x"},
            {"code": {"coding": [{"code": "b"}]}, "valueQuantity": {"value": 2}},
        ]
    )
    assert sink["token"] == [(30, 2, None, "b", None)]
    assert next_grp == 3


def test_component_value_without_a_row_rolls_back_the_element() -> None:
    sink, _ = index([{"code": {"coding": [{"code": "a"}]}, "valueQuantity": {"unit": "no value"}}])
    assert sink == {"token": [], "quantity": []}


def test_grp_numbering_continues_from_the_given_start() -> None:
    sink, next_grp = index([{"code": {"text": "T"}, "valueQuantity": {"value": 1}}], first_grp=5)
    assert sink["token"] == [(30, 5, None, None, "t")]
    assert next_grp == 6
