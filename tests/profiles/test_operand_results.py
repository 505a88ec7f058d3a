"""Invariant results remembered by the JSON they read (profiles/operand_results.py): the same answers as evaluating every time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fhir_server.fhirpath.syntax import parse
from profiles import operand_results, valid_subtrees
from profiles.invariants import compile_constraints
from profiles.validator import issues


@pytest.fixture(autouse=True)
def _empty_tables() -> Iterator[None]:
    valid_subtrees.forget_all()
    yield
    valid_subtrees.forget_all()


@pytest.mark.parametrize(
    ("expression", "reads"),
    [
        ("value.exists()", {"value"}),
        ("dataAbsentReason.empty() or value.empty()", {"dataAbsentReason", "value"}),
        ("code.empty() or system.exists()", {"code", "system"}),
        ("coding.where(system = 'http://loinc.org').exists()", {"coding", "system"}),
        ("component.code.where(coding.intersect(%resource.code.coding).exists()).empty()", None),
        ("%rootResource.contained.exists()", None),
        ("start <= now()", None),
        ("iif(value.exists(), true, false)", None),
        ("$this.value.exists()", None),
        ("Observation.value.exists()", None),
        ("value.ofType(Quantity).exists()", None),
        ("value is Quantity", {"value"}),
        ("code.memberOf(%vs-observation-status)", None),
        ("unit.exists() or %ucum.exists()", {"unit"}),
    ],
)
def test_what_an_expression_reads(expression: str, reads: set[str] | None) -> None:
    found = operand_results.pure_reads(parse(expression))
    assert (found if found is None else set(found)) == reads


def _one(expression: str) -> Any:
    (inv,) = compile_constraints(
        [{"key": "t-1", "severity": "error", "human": "t", "expression": expression}]
    )
    return inv


def test_a_result_is_remembered_by_the_values_it_reads_not_their_shape() -> None:
    inv = _one("code.empty() or code.startsWith('a')")
    assert inv.results is not None
    items = [
        {"code": "a1"},
        {"code": "b1"},
        {"code": "a2"},
        {"code": "b1", "unit": "x"},
        {"unit": "x"},
        {"code": "b1"},
    ]
    fresh = []
    for item in items:
        valid_subtrees.forget_all()
        fresh.append(inv.holds(item, "Quantity", {"resourceType": "Observation"}, None))
    valid_subtrees.forget_all()
    warm = [inv.holds(item, "Quantity", {"resourceType": "Observation"}, None) for item in items]
    assert warm == fresh == [True, False, True, False, True, False]


def test_an_expression_reading_the_resource_is_evaluated_every_time() -> None:
    inv = _one("%resource.status = 'final'")
    assert inv.results is None
    item = {"code": "x"}
    assert inv.holds(item, "Quantity", {"resourceType": "Observation", "status": "final"}, None) is True
    assert inv.holds(item, "Quantity", {"resourceType": "Observation", "status": "draft"}, None) is False


def test_an_operand_reading_the_resource_beside_a_remembered_one() -> None:
    """obs-7: `value.empty()` is remembered, the component operand (reading %resource) is not."""
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "valueQuantity": {"value": 1},
        "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}}],
    }
    failed = [i.message for i in issues(obs) if "obs-7" in i.message]
    assert failed
    other = dict(obs, code={"coding": [{"system": "http://loinc.org", "code": "1-1"}]})
    assert [i.message for i in issues(other) if "obs-7" in i.message] == []
    assert [i.message for i in issues(obs) if "obs-7" in i.message] == failed
