"""The criteria parser: any text is a parsed search or a 400 at Subscription.criteria, never another error (https://hl7.org/fhir/R4/subscription.html#criteria)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from fhir_server.errors import Invalid
from fhir_server.subscriptions import criteria

PIECES = st.sampled_from(
    [
        "Observation",
        "Patient",
        "?",
        "&",
        "=",
        "code",
        "patient",
        "subject",
        "Patient/",
        "A",
        "|",
        ",",
        "\\",
        ":missing",
        ":exact",
        "_id",
        "_sort",
        "http://loinc.org",
        "8867-4",
        "%",
        "%2C",
        "ge2024",
        "name",
        "",
        " ",
    ]
)


@given(st.one_of(st.text(max_size=80), st.lists(PIECES, max_size=12).map("".join)))
def test_any_text_is_a_criteria_or_a_400_at_the_criteria(text: str) -> None:
    try:
        parsed = criteria.parse(text)
    except Invalid as exc:
        assert exc.expression == (criteria.WHERE,)
        return
    assert parsed.res_type in text
    if parsed.key_patient is not None:
        assert parsed.key_patient in text


def test_index_keys_are_taken_only_from_single_plain_values() -> None:
    one = criteria.parse("Observation?code=http://loinc.org|8867-4&patient=Patient/A")
    assert (one.key_code, one.key_patient) == ("8867-4", "A")
    assert criteria.parse("Observation?code=1,2&subject=Patient/A,Patient/B").key_code is None
    assert criteria.parse("Observation?subject=Group/G").key_patient is None
    assert criteria.parse("Observation?patient=A").key_patient == "A"


JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["code", "reference", "x"]), inner, max_size=4),
    ),
    max_leaves=20,
)


@given(
    st.dictionaries(st.sampled_from(["code", "reference", "subject", "resourceType", "id"]), JSON, max_size=5)
)
def test_keys_of_any_json_never_fails_and_finds_patient_references(resource: dict[str, Any]) -> None:
    codes, patients = criteria.keys_of({**resource, "subject": {"reference": "Patient/p-1"}})
    assert "p-1" in patients
    assert all(isinstance(c, str) for c in codes)
