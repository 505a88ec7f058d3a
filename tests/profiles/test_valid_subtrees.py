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


# ---------------------------------------------------------------- whole members and remembered invariant results

_VITALS = ["heartrate", "bodyweight", "oxygensat", "resprate", "bodytemp", "vitalsigns"]


def _vital(draw: Any) -> dict[str, Any]:
    """An ingest-like vital sign: the same code, category, subject and meta in every record."""
    profile = f"http://hl7.org/fhir/StructureDefinition/{draw(st.sampled_from(_VITALS))}"
    obs = factories.observation(
        "p1",
        value=draw(st.sampled_from([60, 61, 72.5, 0, -1])),
        meta={"profile": [profile]},
        identifier=[{"system": "urn:x", "value": draw(st.sampled_from(["a", "b"]))}],
        device={"reference": "Device/d"},
    )
    if draw(st.booleans()):
        obs.pop("effectiveDateTime")
        obs["effectivePeriod"] = {
            "start": "2024-03-05T10:00:00Z",
            "end": draw(st.sampled_from(["2024-03-05", "2024-03-04T10:00:00Z", "2024-03-05T11:00:00Z"])),
        }
    return obs


def _reshape(resource: Any, draw: Any) -> Any:
    """Structural changes a leaf replacement does not make: a member dropped, an array item repeated
    or dropped, an array unwrapped, a single value wrapped in an array, a member given `_` twin."""
    changed = copy.deepcopy(resource)
    for _ in range(draw(st.integers(0, 2))):
        places = [p for p in _leaves(changed) if p]
        if not places:
            break
        path = draw(st.sampled_from(places))
        parent = changed
        for key in path[:-1]:
            parent = parent[key]
        last, value = path[-1], parent[path[-1]]
        kind = draw(st.sampled_from(["drop", "repeat", "unwrap", "wrap", "twin", "null"]))
        if kind == "drop":
            del parent[last]
        elif kind == "repeat" and isinstance(value, list) and value:
            value.append(copy.deepcopy(value[draw(st.integers(0, len(value) - 1))]))
        elif kind == "unwrap" and isinstance(value, list) and value:
            parent[last] = value[0]
        elif kind == "wrap":
            parent[last] = [value]
        elif kind == "twin" and isinstance(parent, dict) and isinstance(last, str):
            parent["_" + last] = draw(
                st.sampled_from([{"extension": [{"url": "http://x", "valueString": "y"}]}, [None], None, {}])
            )
        elif kind == "null" and isinstance(value, list):
            value.append(None)
    return changed


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_whole_members_and_invariant_results_never_change_what_is_found(data: st.DataObject) -> None:
    """Vital signs as ingest writes them (profiles with slices and invariants) and HL7's examples,
    reshaped and with leaves replaced: each one's issues with every table warm equal its issues
    walked cold (no remembered member, value or invariant result)."""
    sequence = []
    for _ in range(data.draw(st.integers(2, 6))):
        base = (
            _vital(data.draw)
            if data.draw(st.booleans())
            else _LOADED[data.draw(st.integers(0, len(_LOADED) - 1))]
        )
        sequence.append(_reshape(_mutate(base, data.draw), data.draw))
    sequence += [copy.deepcopy(r) for r in sequence]
    expected = [cold(r) for r in sequence]
    valid_subtrees.forget_all()
    assert [issues(r) for r in sequence] == expected


def test_a_valid_member_is_remembered_whole_and_each_record_adds_only_its_new_members() -> None:
    """category (with the vital signs slice), code, subject, meta: one entry each per pass; the
    next record with the same members walks only its own identifier."""
    first = factories.observation("p1", meta={"profile": [HEARTRATE]}, identifier=[{"value": "1"}])
    assert errors(first) == []
    remembered = set(valid_subtrees._valid)
    whole = {(key[0].path, key[2]) for key in remembered if key[5]}
    assert {("Observation.category", False), ("Observation.category", True)} <= whole
    second = factories.observation("p1", meta={"profile": [HEARTRATE]}, identifier=[{"value": "2"}])
    assert errors(second) == []
    new = set(valid_subtrees._valid) - remembered
    assert new and all(key[0].path == "Observation.identifier" for key in new), new


def test_an_array_with_a_null_is_never_remembered_whole() -> None:
    """A null item is allowed only beside a `_name` array of extensions: the same array without it
    is an error, whatever was walked before."""
    ext = {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}
    with_twin = {"resourceType": "Patient", "name": [{"given": ["a", None], "_given": [None, ext]}]}
    assert errors(with_twin) == []
    alone = {"resourceType": "Patient", "name": [{"given": ["a", None]}]}
    assert [i.expression for i in errors(alone)] == [("Patient.name[0].given[1]",)]
    assert issues(alone) == cold(alone)
