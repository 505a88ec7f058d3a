"""Composite parameters are indexed only when the element that gates them is present
(fhir_server/search/index.py `_composite_gate`): the oracle runs every composite step on every resource."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_server.search import index
from tests.search.test_index import MALFORMED_KEYS, json_values
from tests.search.test_index_remembered import _resources


@pytest.fixture
def ungated(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A resource's rows with every composite step run whatever the resource holds."""
    planned = index.plan

    def plan(resource_type: str) -> index.Plan:
        p = planned(resource_type)
        return dataclasses.replace(p, always=p.always + tuple(step for _, step in p.gated), gated=())

    def rows(resource: dict[str, Any]) -> Any:
        with monkeypatch.context() as m:
            m.setattr(index, "plan", plan)
            return index.index_tuples(resource)

    yield rows


def _same(a: dict[str, list[Any]], b: dict[str, list[Any]]) -> bool:
    return {k: sorted(map(repr, v)) for k, v in a.items()} == {k: sorted(map(repr, v)) for k, v in b.items()}


def test_observation_composites_are_gated_by_their_value_or_component_element() -> None:
    gates = dict((key, step) for key, step in index.plan("Observation").gated)
    # code-value-quantity, -concept and -date have no rows (their components' parameters answer them)
    assert set(gates) == {"valueString", "component"}
    assert len(index.plan("Observation").gated) == 3  # the two component-code-value-* share `component`


def test_every_hl7_example_and_synthea_resource_has_the_rows_of_every_composite_step(ungated: Any) -> None:
    resources = _resources()
    differ = [r.get("id") for r in resources if not _same(index.index_tuples(r), ungated(r))]
    assert differ == [] and len(resources) > 5_000


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    case=st.sampled_from(sorted(t for t in MALFORMED_KEYS if index.plan(t).gated)).flatmap(
        lambda t: st.tuples(
            st.just(t), st.dictionaries(st.sampled_from(MALFORMED_KEYS[t]), json_values, max_size=6)
        )
    )
)
def test_odd_shapes_have_the_rows_of_every_composite_step(
    case: tuple[str, dict[str, Any]], ungated: Any
) -> None:
    resource_type, fields = case
    resource = {"resourceType": resource_type, **fields}
    assert _same(index.index_tuples(resource), ungated(resource))
