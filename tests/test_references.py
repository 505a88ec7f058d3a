"""Walking the References inside a resource (https://hl7.org/fhir/R4/references.html)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_server import spec_package
from fhir_server.references import values, values_of_text, walk

_KEYS = st.sampled_from(["reference", "contained", "subject", "performer", "extension", "value", "display"])
_LEAVES = st.one_of(st.text(max_size=8), st.integers(), st.booleans(), st.none())
_JSON = st.recursive(
    _LEAVES,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(_KEYS, children, max_size=5)),
    max_leaves=40,
)


@settings(max_examples=400)
@given(_JSON)
def test_values_are_the_references_walk_yields_in_its_order(node: Any) -> None:
    """The store notes `values` for every write and asks `walk` for a failing one's path by its
    position: both must see the same references, `contained` left out, in the same order."""
    assert values(node) == [element["reference"] for element, _ in walk(node, "X")]


def test_values_skip_contained_resources_and_non_string_references() -> None:
    resource = {
        "resourceType": "Observation",
        "contained": [
            {"resourceType": "Patient", "id": "p", "link": [{"other": {"reference": "Patient/x"}}]}
        ],
        "subject": {"reference": "#p"},
        "performer": [
            {"reference": 5},
            {"reference": "Practitioner/1", "identifier": {"assigner": {"reference": "Organization/o"}}},
        ],
    }
    assert values(resource) == ["#p", "Practitioner/1", "Organization/o"]
    assert values_of_text(orjson.dumps(resource)) == values(resource)  # contained: the walk decides


_TEXTS = st.one_of(
    st.text(max_size=8),
    st.sampled_from(['"reference":"x"', "a\\", '\\"', "Patient/1", "\u00e9\u4e2d", "\n\t", "\x01"]),
)
_ANY_LEAVES = st.one_of(
    _TEXTS, st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.booleans(), st.none()
)
_ANY_KEYS = st.one_of(
    _KEYS, st.sampled_from(["sourceReference", "_reference", "xreference"]), st.text(max_size=4)
)
_ANY_JSON = st.recursive(
    _ANY_LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(_ANY_KEYS, children, max_size=5)
    ),
    max_leaves=40,
)


@settings(max_examples=600)
@given(_ANY_JSON)
def test_the_scan_of_the_json_text_finds_the_references_values_finds(node: Any) -> None:
    """The store notes a write's references by scanning its stored JSON (`values_of_text`): the same
    strings as the walk, whatever the keys, nesting, escapes and non-string "reference" members
    (in the text's order, which may differ from the walk's)."""
    text = orjson.dumps(node)
    assert Counter(values_of_text(text)) == Counter(values(node))
    assert Counter(values_of_text(text, node)) == Counter(values(node))  # the walk of `node` itself


def test_the_scan_finds_the_references_of_every_hl7_example() -> None:
    checked = with_refs = 0
    for _path, resource in spec_package.resources():
        found = values_of_text(orjson.dumps(resource))
        assert Counter(found) == Counter(values(resource)), resource.get("resourceType")
        checked += 1
        with_refs += bool(found)
    assert checked > 2000 and with_refs > 500, (checked, with_refs)


def test_the_scan_leaves_the_members_inside_a_non_string_reference_to_the_walk() -> None:
    nested = {"subject": {"reference": {"reference": "Patient/hidden"}}, "performer": [{"reference": "A/1"}]}
    assert values_of_text(orjson.dumps(nested)) == values(nested) == ["A/1"]
