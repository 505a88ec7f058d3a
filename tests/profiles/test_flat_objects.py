"""Objects of plain primitives accepted in one pass, and members a profile leaves as the base defines them (profiles/flat_objects.py, walk.py `_unconstrained`): the walk with both finds exactly what it finds without them."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_server.errors import Issue
from profiles import flat_objects, valid_subtrees, validator, walk
from profiles.snapshot import compiled, for_type
from tests import factories
from tests.profiles.test_valid_subtrees import _LOADED, _mutate, _reshape, _vital

VITALS = [
    f"http://hl7.org/fhir/StructureDefinition/{name}"
    for name in ("vitalsigns", "heartrate", "bodyweight", "bp", "bodytemp", "oxygensat", "resprate")
]


@pytest.fixture(autouse=True)
def _empty_tables() -> Iterator[None]:
    valid_subtrees.forget_all()
    yield
    valid_subtrees.forget_all()


def issues(resource: Any, profiles: list[str] | None = None) -> list[Issue]:
    return validator.issues(resource, warnings=True, profiles=profiles or ())


def slow(resource: Any, profiles: list[str] | None = None) -> list[Issue]:
    """The walk without either shortcut, and with nothing remembered."""
    valid_subtrees.forget_all()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(flat_objects, "accepts", lambda *_: False)
        mp.setattr(walk, "_unconstrained", lambda *_: False)
        return issues(resource, profiles)


# ---------------------------------------------------------------- flat objects

IDENTIFIER = for_type("Identifier")
PRIMITIVE_VALUES = st.one_of(
    st.sampled_from(["urn:x", "a", "", " ", " a", "a\u0000", "official", "bogus", "x" * 300]),
    st.integers(-2, 2),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.just([]),
    st.just(["a"]),
    st.just({}),
    st.just({"text": "t"}),
)
MEMBER_NAMES = st.sampled_from(
    [
        "system",
        "value",
        "use",
        "id",
        "type",
        "period",
        "assigner",
        "_value",
        "extension",
        "bogus",
        "resourceType",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(MEMBER_NAMES, PRIMITIVE_VALUES, max_size=4))
def test_an_accepted_identifier_is_one_the_walk_finds_nothing_wrong_with(member: dict[str, Any]) -> None:
    """Whatever the members: accepted means the slow walk of the same identifier reports nothing."""
    assert IDENTIFIER is not None
    obs = factories.observation("p1", identifier=[member])
    if flat_objects.accepts(IDENTIFIER.root, True, member):
        assert [i for i in slow(obs) if "identifier" in str(i.expression)] == []
    assert issues(obs) == slow(obs)


def test_plain_primitives_are_accepted_and_anything_else_is_left_to_the_walk() -> None:
    assert IDENTIFIER is not None
    root = IDENTIFIER.root
    assert flat_objects.accepts(root, False, {"system": "urn:x", "value": "8e9c8f4b"})
    assert flat_objects.accepts(root, True, {"id": "i1", "value": "a"})
    left: list[dict[str, Any]] = [
        {},  # ele-1
        {"id": "i1"},  # ele-1
        {"value": ""},  # not a valid string
        {"value": 7},  # not a string
        {"value": ["a"]},  # an array where one value is allowed
        {"value": "a", "_value": {"extension": []}},  # a primitive's extension part
        {"value": "a", "bogus": "b"},  # unknown element
        {"value": "a", "use": "official"},  # a required binding: the walk checks it
        {"value": "a", "period": {"start": "2024"}},  # a complex member
    ]
    for member in left:
        assert not flat_objects.accepts(root, False, member), member


# ---------------------------------------------------------------- profile passes


@pytest.mark.parametrize("profile", VITALS)
def test_hl7_observations_against_each_vital_signs_profile(profile: str) -> None:
    """Every Observation example of HL7's package, claimed against a vital signs profile (most of
    them fail it: wrong code, category, value): the same issues with and without the shortcuts."""
    observations = [r for r in _LOADED if r.get("resourceType") == "Observation"]
    assert len(observations) > 20
    for resource in observations:
        assert issues(resource, [profile]) == slow(resource, [profile]), resource.get("id")


def test_a_profile_maximum_is_still_checked_for_an_unconstrained_member() -> None:
    """A profile that allows `identifier` once (and says nothing else of it) reports two."""
    obs = factories.observation(
        "p1",
        identifier=[{"value": "a"}, {"value": "b"}],
        meta={"profile": ["http://hl7.org/fhir/StructureDefinition/heartrate"]},
    )
    definition = compiled("http://hl7.org/fhir/StructureDefinition/heartrate")
    assert definition is not None
    element = definition.by_path["Observation.identifier"]
    original = element.max
    element.max = 1
    try:
        found = [i for i in issues(obs) if i.severity == "error"]
        assert any("at most 1" in i.message and "profile" in i.message for i in found), found
        assert issues(obs) == slow(obs)
    finally:
        element.max = original


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_shortcuts_never_change_what_is_found(data: st.DataObject) -> None:
    """Vital signs as ingest writes them and HL7's examples, reshaped and with leaves replaced,
    some claimed against a vital signs profile: the same issues with and without the shortcuts."""
    for _ in range(data.draw(st.integers(2, 5))):
        base = (
            _vital(data.draw)
            if data.draw(st.booleans())
            else _LOADED[data.draw(st.integers(0, len(_LOADED) - 1))]
        )
        resource = _reshape(_mutate(base, data.draw), data.draw)
        claimed = data.draw(st.sampled_from([[], *[[p] for p in VITALS]]))
        valid_subtrees.forget_all()
        assert issues(copy.deepcopy(resource), claimed) == slow(resource, claimed)
