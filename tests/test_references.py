"""Walking the References inside a resource (https://hl7.org/fhir/R4/references.html)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_server.references import values, walk

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
