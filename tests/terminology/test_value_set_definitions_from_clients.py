"""A ValueSet sent by a client (or stored) is expanded or refused with a FHIR error, never a crash
(https://hl7.org/fhir/R4/valueset.html#compositions)."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from fhir_server.errors import FhirError
from terminology import valuesets

ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
filters = st.fixed_dictionaries(
    {
        "property": st.sampled_from(["concept", "code", "display", "status", "nope"]) | json_values,
        "op": st.sampled_from(["is-a", "=", "regex", "in", "not-in", "exists", "is-not-a", "x"])
        | json_values,
        "value": st.sampled_from(["CHILD", "FAMMEMB", "D.*", "(", "true", "SON,DAU"]) | json_values,
    }
)
parts = st.fixed_dictionaries(
    {},
    optional={
        "system": st.sampled_from([ROLE_CODE, "http://loinc.org", "http://snomed.info/sct"]) | json_values,
        "version": json_values,
        "concept": st.lists(
            st.fixed_dictionaries(
                {}, optional={"code": st.text(max_size=8) | json_values, "display": json_values}
            ),
            max_size=3,
        )
        | json_values,
        "filter": st.lists(filters | json_values, max_size=2) | json_values,
        "valueSet": st.lists(
            st.sampled_from(["http://hl7.org/fhir/ValueSet/administrative-gender", "http://example.org/x"])
            | json_values,
            max_size=2,
        )
        | json_values,
    },
)
composes = st.fixed_dictionaries(
    {},
    optional={
        "include": st.lists(parts, max_size=3) | json_values,
        "exclude": st.lists(parts, max_size=2) | json_values,
        "inactive": json_values,
    },
)


@given(url=json_values, compose=composes | json_values)
# found by CI: a boolean where the concept or filter list belongs crashed the expander (fails on 0568f00)
@example(url="", compose={"include": [{"system": "http://loinc.org", "concept": True}]})
@example(url="", compose={"include": [{"system": ROLE_CODE, "filter": True}]})
@example(url="", compose={"include": [{"system": True}]})
def test_any_definition_expands_or_fails_as_a_fhir_error(url: Any, compose: Any) -> None:
    try:
        expansion = valuesets.expand({"url": url, "compose": compose})
    except FhirError:
        return
    assert all(isinstance(c.code, str) for c in expansion.contains)
