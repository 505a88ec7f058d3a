"""Rows of repeated elements are remembered (fhir_server/search/index.py `_element_rows`) and are
exactly the rows computed afresh: the oracle is the plain plan, with nothing remembered."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_server import spec_package
from fhir_server.search import index, parameters
from tests.conftest import synthea_files
from tests.search.test_index import MALFORMED_KEYS, json_values

pytestmark = pytest.mark.rolled_back


@pytest.fixture
def plain(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A function giving a resource's rows with nothing remembered (and leaving the table as it was)."""

    def rows(resource: dict[str, Any]) -> Any:
        with monkeypatch.context() as m:
            m.setattr(index, "_remembered", lambda resource_type: set())
            return index.index_tuples(resource)

    yield rows


def _resources() -> list[dict[str, Any]]:
    known = set(parameters.resource_types())
    out = [r for _, r in spec_package.resources() if r.get("resourceType") in known]
    for path in synthea_files()[:10]:
        bundle = orjson.loads(path.read_bytes())
        out += [e["resource"] for e in bundle.get("entry", []) if "resource" in e]
    return out


def test_every_hl7_example_and_synthea_resource_indexes_the_same_remembered(plain: Any) -> None:
    resources = _resources()
    for resource in resources:  # fill the table (twice over: Synthea repeats its codes)
        index.index_tuples(resource)
    differ = [r.get("id") for r in resources if index.index_tuples(r) != plain(r)]
    assert differ == [] and len(resources) > 5_000


def test_a_key_that_does_not_repeat_stops_being_remembered() -> None:
    remembered = index._remembered("Observation")
    assert {"code", "subject", "identifier"} <= remembered
    before = dict(index._probes)
    try:
        index._probes.pop(("Observation", "identifier"), None)
        for i in range(index._PROBE):
            index.index_tuples({"resourceType": "Observation", "identifier": [{"value": f"v{i}"}]})
        assert "identifier" not in remembered and "code" in remembered
    finally:
        remembered.add("identifier")
        index._probes.clear()
        index._probes.update(before)


@settings(max_examples=300)
@given(
    st.sampled_from(sorted(MALFORMED_KEYS)).flatmap(
        lambda t: st.tuples(
            st.just(t), st.dictionaries(st.sampled_from(MALFORMED_KEYS[t]), json_values, max_size=6)
        )
    ),
    st.sampled_from([1, 1.0, True, "1", None, float("inf"), 10**30]),
)
def test_odd_shapes_index_the_same_remembered(case: tuple[str, dict[str, Any]], odd: Any) -> None:
    """Including values orjson cannot tell apart or cannot write (infinity as null, huge ints)."""
    resource_type, fields = case
    resource = {"resourceType": resource_type, **fields}
    twin = {**resource, **{k: {"value": odd, "reference": "Patient/1"} for k in list(fields)[:1]}}
    for r in (resource, twin, resource, twin):  # each seen once before: remembered the second time
        saved = index._remembered
        try:
            index._remembered = lambda resource_type: set()  # type: ignore[assignment]
            expected = index.index_tuples(r)
        finally:
            index._remembered = saved  # type: ignore[assignment]
        assert index.index_tuples(r) == expected
