"""Operation parameters from a URL or a Parameters body (https://hl7.org/fhir/R4/operations.html#request)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_server.errors import Invalid
from fhir_server.operations.parameters import from_body, from_query, group, parameters, part

names = st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=12).filter(
    lambda n: n not in ("_format", "_pretty")
)
texts = st.text(max_size=30)


@given(st.lists(st.tuples(names, texts), max_size=12))
def test_url_and_body_give_the_same_parameters(pairs: list[tuple[str, str]]) -> None:
    body = {"resourceType": "Parameters", "parameter": [{"name": n, "valueString": v} for n, v in pairs]}
    assert from_query(pairs).values == from_body(body).values


@given(st.lists(st.tuples(names, texts), max_size=6), st.lists(st.tuples(names, texts), max_size=6))
def test_a_post_adds_the_url_parameters_after_the_body(
    body_pairs: list[tuple[str, str]], url_pairs: list[tuple[str, str]]
) -> None:
    body = {"resourceType": "Parameters", "parameter": [{"name": n, "valueCode": v} for n, v in body_pairs]}
    assert from_body(body, url_pairs).values == from_query(body_pairs + url_pairs).values


@given(st.booleans())
def test_booleans_parse_from_text_and_from_value_boolean(flag: bool) -> None:
    text = "true" if flag else "false"
    assert from_query([("activeOnly", text)]).boolean("activeOnly") is flag
    body = {"resourceType": "Parameters", "parameter": [{"name": "activeOnly", "valueBoolean": flag}]}
    assert from_body(body).boolean("activeOnly") is flag


@given(st.integers(min_value=0, max_value=10**9))
def test_integers_parse_from_text_and_from_value_integer(n: int) -> None:
    assert from_query([("count", str(n))]).integer("count") == n
    body = {"resourceType": "Parameters", "parameter": [{"name": "count", "valueInteger": n}]}
    assert from_body(body).integer("count") == n


@given(st.text(max_size=10).filter(lambda t: not t.strip().isdigit()))
def test_non_numbers_are_refused_as_integers(text: str) -> None:
    with pytest.raises(Invalid, match="count"):
        from_query([("count", text)]).integer("count")


@given(st.text(max_size=10).filter(lambda t: t not in ("true", "false")))
def test_other_text_is_refused_as_a_boolean(text: str) -> None:
    with pytest.raises(Invalid, match="flag"):
        from_query([("flag", text)]).boolean("flag")


def test_format_parameters_are_not_operation_parameters() -> None:
    assert from_query([("_format", "json"), ("_pretty", "true"), ("url", "u")]).values == {"url": ("u",)}


def test_repeating_a_single_parameter_is_refused() -> None:
    with pytest.raises(Invalid, match="'url' may be given only once"):
        from_query([("url", "a"), ("url", "b")]).text("url")


def test_resources_and_complex_values_come_from_a_body_only() -> None:
    coding = {"system": "s", "code": "c"}
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "coding", "valueCoding": coding},
            {"name": "valueSet", "resource": {"resourceType": "ValueSet"}},
        ],
    }
    got = from_body(body)
    assert got.complex("coding") == coding and got.complex("valueSet") == {"resourceType": "ValueSet"}
    with pytest.raises(Invalid, match="Parameters body"):
        from_query([("coding", "s|c")]).complex("coding")


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Bundle"},
        [],
        {"resourceType": "Parameters", "parameter": {}},
        {"resourceType": "Parameters", "parameter": [{"valueString": "x"}]},
        {"resourceType": "Parameters", "parameter": [{"name": "a"}]},
        {"resourceType": "Parameters", "parameter": [{"name": "a", "valueString": "x", "valueCode": "y"}]},
        {"resourceType": "Parameters", "parameter": [{"name": "a", "part": []}]},
    ],
)
def test_malformed_bodies_are_a_bad_request(body: object) -> None:
    with pytest.raises(Invalid):
        from_body(body)


def test_output_parameters() -> None:
    out = parameters([part("result", "boolean", True), group("property", [part("code", "code", "parent")])])
    assert out == {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "result", "valueBoolean": True},
            {"name": "property", "part": [{"name": "code", "valueCode": "parent"}]},
        ],
    }
