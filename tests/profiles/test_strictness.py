"""The write path's verdict is at least as strict as the R4B models' (issue 11): a mutation of a valid
resource that the models refuse, the StructureDefinition validator refuses too (Hypothesis)."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_server import model
from fhir_server.errors import Invalid
from profiles import validator
from tests import factories

_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.sampled_from(
        ["final", "female", "2020-01-01", "2020-01-01T10:00:00Z", "http://loinc.org", "", " x", "8867-4"]
    ),
    st.just({}),
    st.just([]),
    st.just({"text": "t"}),
    st.just([{"text": "t"}]),
    st.just({"reference": "Patient/1"}),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            if k != "resourceType":
                out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _set(node: Any, path: tuple[Any, ...], value: Any) -> None:
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


BASES = [factories.patient(), factories.observation("p1"), factories.encounter("p1")]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(range(len(BASES))), st.data())
def test_what_the_r4b_models_refuse_the_validator_refuses(which: int, data: st.DataObject) -> None:
    resource = copy.deepcopy(BASES[which])
    paths = _paths(resource)
    for _ in range(data.draw(st.integers(1, 2))):
        path = data.draw(st.sampled_from(paths))
        try:
            _set(resource, path, copy.deepcopy(data.draw(_values)))
        except (KeyError, IndexError, TypeError):
            continue
        paths = _paths(resource) or paths
    try:
        model.check_models(resource)
    except Invalid:
        errors = [i for i in validator.issues(resource) if i.severity == "error"]
        assert errors, resource
