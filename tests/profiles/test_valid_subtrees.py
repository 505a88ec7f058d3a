"""Remembered valid values (profiles/valid_subtrees.py): the walk with them finds exactly what the walk without them finds."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_server import spec_package
from fhir_server.errors import Issue
from profiles import valid_subtrees, validator
from tests import factories

HEARTRATE = "http://hl7.org/fhir/StructureDefinition/heartrate"


@pytest.fixture(autouse=True)
def _empty_table() -> Iterator[None]:
    valid_subtrees.forget_all()
    yield
    valid_subtrees.forget_all()


def issues(resource: Any) -> list[Issue]:
    return validator.issues(resource, warnings=True)


def errors(resource: Any) -> list[Issue]:
    return [i for i in issues(resource) if i.severity == "error"]


def cold(resource: Any) -> list[Issue]:
    """The walk with nothing remembered."""
    valid_subtrees.forget_all()
    return issues(resource)


def test_a_repeated_value_is_walked_once() -> None:
    first = factories.observation("p1", meta={"profile": [HEARTRATE]})
    assert errors(first) == []
    remembered = set(valid_subtrees._valid)
    assert remembered
    second = factories.observation("p1", value=80, meta={"profile": [HEARTRATE]})
    assert errors(second) == []
    # only the value that differs (valueQuantity, in the base and the profile pass) is new
    new = set(valid_subtrees._valid) - remembered
    assert new and all('"value":80' in key[-1] for key in new)


def test_an_invalid_value_is_reported_every_time() -> None:
    bad = factories.observation("p1", code="8867-4")
    bad["code"] = {"coding": [{"system": "http://loinc.org", "code": 7}]}
    once = issues(bad)
    assert once and once == issues(copy.deepcopy(bad))


def test_a_local_reference_valid_in_one_resource_is_checked_again_in_another() -> None:
    """ref-1 reads the root's contained resources: a `#id` reference is never remembered."""
    performer = {"reference": "#p"}
    inside = factories.observation(
        "p1",
        contained=[{"resourceType": "Practitioner", "id": "p"}],
        performer=[performer],
    )
    assert errors(inside) == []
    outside = factories.observation("p1", performer=[dict(performer)])
    found = errors(outside)
    assert any("ref-1" in i.message for i in found), found


def test_the_same_value_under_another_resource_type_is_walked_again() -> None:
    """The key names the resource type (an invariant's compiled form depends on it)."""
    subject = {"reference": "Patient/p1"}
    assert errors(factories.observation(None, subject=subject)) == []
    before = len(valid_subtrees._valid)
    assert errors(factories.encounter("p1")) == []
    assert len(valid_subtrees._valid) > before


def test_vs_1_a_vital_signs_date_time_must_be_precise_to_the_day() -> None:
    """Fails on the old code: vs-1 went to fhirpathpy, which could not evaluate it (never an error)."""
    month = factories.observation("p1", effectiveDateTime="2024-03", meta={"profile": [HEARTRATE]})
    found = errors(month)
    assert [(i.code, i.expression) for i in found] == [("invariant", ("Observation.effectiveDateTime",))]
    assert "vs-1" in found[0].message
    day = factories.observation("p1", effectiveDateTime="2024-03-05", meta={"profile": [HEARTRATE]})
    assert errors(day) == []
    period = factories.observation("p1", meta={"profile": [HEARTRATE]}, effectivePeriod={"start": "2024-03"})
    period.pop("effectiveDateTime")
    assert errors(period) == []


# ---------------------------------------------------------------- the oracle over HL7's examples

_EXAMPLES = sorted(
    p
    for p in spec_package.ensure().glob("*.json")
    if p.name.split("-", 1)[0]
    in {"Observation", "Patient", "Encounter", "MedicationStatement", "Goal", "DocumentReference"}
)
_LOADED = [orjson.loads(p.read_bytes()) for p in _EXAMPLES]

_REPLACEMENTS = st.one_of(
    st.sampled_from(["", " ", "#p", "#", "x", "2024-13-01", "final", "bogus", "Patient/1", "urn:uuid:1"]),
    st.integers(-3, 3),
    st.booleans(),
    st.none(),
    st.just({}),
    st.just([]),
    st.just({"reference": "#missing"}),
)


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        if key in ("resourceType", "text"):
            continue
        out.append((*path, key))
        out += _leaves(value, (*path, key))
    return out


def _mutate(resource: Any, draw: Any) -> Any:
    changed = copy.deepcopy(resource)
    for _ in range(draw(st.integers(0, 3))):
        leaves = _leaves(changed)
        if not leaves:
            break
        path = draw(st.sampled_from(leaves))
        parent = changed
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = copy.deepcopy(draw(_REPLACEMENTS))
    return changed


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_remembering_never_changes_what_is_found(data: st.DataObject) -> None:
    """A sequence of HL7 examples, some with leaves replaced by other (often invalid) values:
    each one's issues with the table warm from the ones before equal its issues walked cold."""
    picks = data.draw(st.lists(st.sampled_from(range(len(_LOADED))), min_size=2, max_size=6))
    sequence = [_mutate(_LOADED[i], data.draw) for i in picks]
    sequence += [copy.deepcopy(r) for r in sequence]  # the same again: now every valid value is known
    expected = [cold(r) for r in sequence]
    valid_subtrees.forget_all()
    assert [issues(r) for r in sequence] == expected
