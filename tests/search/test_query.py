"""Parsing a search query string into a SearchQuery (https://hl7.org/fhir/R4/search.html)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_server.errors import Invalid
from fhir_server.search import parameters
from fhir_server.search.query import (
    RESULT_PARAMETERS,
    Chain,
    Filter,
    Has,
    MissingValue,
    SearchQuery,
    UnknownParameter,
    encode_cursor,
    parse,
)
from fhir_server.search.types.date import DateValue
from fhir_server.search.types.reference import ReferenceValue
from fhir_server.search.types.token import TokenValue


def q(resource_type: str | None, *pairs: tuple[str, str], lenient: bool = False) -> SearchQuery:
    return parse(resource_type, list(pairs), lenient=lenient, now_us=0)


def only_filter(query: SearchQuery) -> Filter:
    assert len(query.criteria) == 1
    f = query.criteria[0]
    assert isinstance(f, Filter)
    return f


def test_repeated_parameters_are_anded_and_commas_ored() -> None:
    query = q("Observation", ("code", "a,b"), ("code", "c"))
    assert len(query.criteria) == 2
    first, second = query.criteria
    assert isinstance(first, Filter) and isinstance(second, Filter)
    assert [v.code for v in first.values if isinstance(v, TokenValue)] == ["a", "b"]
    assert [v.code for v in second.values if isinstance(v, TokenValue)] == ["c"]


def test_escaped_comma_is_one_value() -> None:
    f = only_filter(q("Observation", ("code", r"a\,b")))
    assert f.values == (TokenValue(None, "a,b", False),)


def test_parameter_resolves_to_the_registry_param_id() -> None:
    f = only_filter(q("Patient", ("name", "smith")))
    assert f.param.ids == (parameters.param_id("Patient", "name"),)
    assert f.param.type == "string"


def test_unknown_parameter_is_a_400_naming_it() -> None:
    with pytest.raises(Invalid) as err:
        q("Patient", ("nickname", "bob"))
    assert err.value.status == 400
    assert "nickname" in err.value.message
    assert err.value.expression == ("nickname",)


def test_unknown_parameter_is_ignored_and_reported_when_lenient() -> None:
    query = q("Patient", ("nickname", "bob"), ("name", "x"), lenient=True)
    assert query.ignored == (("nickname", "bob"),)
    assert query.used == (("name", "x"),)
    assert len(query.criteria) == 1


def test_unknown_modifier_is_a_400_and_ignored_when_lenient() -> None:
    with pytest.raises(UnknownParameter):
        q("Patient", ("name:fuzzy", "bob"))
    assert q("Patient", ("name:fuzzy", "bob"), lenient=True).ignored == (("name:fuzzy", "bob"),)


def test_modifier_of_another_type_is_rejected() -> None:
    with pytest.raises(Invalid):
        q("Patient", ("gender:exact", "male"))


def test_malformed_value_is_a_400_even_when_lenient() -> None:
    with pytest.raises(Invalid) as err:
        q("Patient", ("birthdate", "yesterday"), lenient=True)
    assert err.value.expression == ("birthdate",)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("birthdate", "gt2013-13"),
        ("birthdate", "xx2013"),
        ("value-quantity", "big|http://unitsofmeasure.org|mg"),
        ("value-quantity", "5|mg"),
        ("combo-code-value-quantity", "a"),
    ],
)
def test_malformed_values_name_the_parameter(name: str, value: str) -> None:
    rtype = "Patient" if name == "birthdate" else "Observation"
    with pytest.raises(Invalid) as err:
        q(rtype, (name, value))
    assert name in err.value.message


def test_missing_modifier_takes_true_or_false() -> None:
    f = only_filter(q("Patient", ("birthdate:missing", "true")))
    assert f.values == (MissingValue(True),)
    with pytest.raises(Invalid):
        q("Patient", ("birthdate:missing", "yes"))


def test_type_modifier_on_reference() -> None:
    f = only_filter(q("Observation", ("subject:Patient", "23")))
    assert f.modifier == "type"
    assert f.values == (ReferenceValue("Patient", "23", None),)


def test_type_modifier_outside_the_targets_is_rejected() -> None:
    with pytest.raises(UnknownParameter):
        q("Observation", ("subject:Observation", "23"))


def test_identifier_and_of_type_use_their_pseudo_parameter_ids() -> None:
    f = only_filter(q("Observation", ("subject:identifier", "http://s|1")))
    assert f.aux_ids == (parameters.param_id("Observation", "subject:identifier"),)
    g = only_filter(q("Patient", ("identifier:of-type", "http://t|MR|1")))
    assert g.aux_ids == (parameters.param_id("Patient", "identifier:of-type"),)


def test_chain_resolves_on_the_target_type() -> None:
    query = q("Observation", ("subject:Patient.name", "smith"))
    chain = query.criteria[0]
    assert isinstance(chain, Chain)
    assert chain.target_types == ("Patient",)
    assert isinstance(chain.criterion, Filter)
    assert chain.criterion.param.ids == (parameters.param_id("Patient", "name"),)


def test_chain_without_type_keeps_only_targets_that_have_the_parameter() -> None:
    chain = q("Observation", ("subject.name", "smith")).criteria[0]
    assert isinstance(chain, Chain)
    assert "Patient" in chain.target_types and "Device" not in chain.target_types


def test_two_level_chain() -> None:
    chain = q("Observation", ("patient.general-practitioner.name", "x")).criteria[0]
    assert isinstance(chain, Chain) and isinstance(chain.criterion, Chain)
    assert chain.criterion.target_types == ("Practitioner",) or "Practitioner" in chain.criterion.target_types


def test_chain_to_a_type_lacking_the_parameter_is_a_400() -> None:
    with pytest.raises(Invalid) as err:
        q("Observation", ("subject:Patient.code", "x"))
    assert "subject:Patient.code" in err.value.message


def test_chain_through_a_non_reference_is_a_400() -> None:
    with pytest.raises(Invalid):
        q("Observation", ("code.name", "x"))


def test_has_and_nested_has() -> None:
    has = q("Patient", ("_has:Observation:patient:code", "1234")).criteria[0]
    assert isinstance(has, Has) and has.source_type == "Observation"
    nested = q("Patient", ("_has:Observation:patient:_has:DiagnosticReport:result:status", "final")).criteria[
        0
    ]
    assert isinstance(nested, Has) and isinstance(nested.criterion, Has)
    assert nested.criterion.source_type == "DiagnosticReport"


def test_has_with_unknown_parts_is_rejected() -> None:
    with pytest.raises(Invalid):
        q("Patient", ("_has:Observation:patient", "x"))
    with pytest.raises(Invalid):
        q("Patient", ("_has:Observation:code:status", "x"))  # code is not a reference
    with pytest.raises(Invalid):
        q("Patient", ("_has:Nope:patient:code", "x"))


def test_id_and_last_updated_come_from_the_resource_table() -> None:
    f = only_filter(q("Patient", ("_id", "a,b")))
    assert f.param.on_resource_table and [v.code for v in f.values if isinstance(v, TokenValue)] == ["a", "b"]
    g = only_filter(q("Patient", ("_lastUpdated", "gt2020")))
    assert g.param.type == "lastUpdated" and isinstance(g.values[0], DateValue)


def test_sort_keys_with_direction() -> None:
    query = q("Patient", ("_sort", "family,-birthdate"), ("_sort", "_id"))
    assert [(k.param.code, k.descending) for k in query.sort] == [
        ("family", False),
        ("birthdate", True),
        ("_id", False),
    ]
    assert query.sort_signature == "family,-birthdate,_id"


def test_sort_on_unknown_or_composite_parameter_is_a_400() -> None:
    with pytest.raises(Invalid):
        q("Patient", ("_sort", "nickname"))
    with pytest.raises(Invalid):
        q("Observation", ("_sort", "code-value-quantity"))


@pytest.mark.parametrize(("value", "expected"), [("0", 0), ("10", 10), ("5000", 1000)])
def test_count_is_capped_at_the_server_maximum(value: str, expected: int) -> None:
    query = q("Patient", ("_count", value))
    assert query.count == expected
    assert query.used == (("_count", str(expected)),)


@pytest.mark.parametrize("bad", ["-1", "ten", "1.5"])
def test_bad_count_is_a_400(bad: str) -> None:
    with pytest.raises(Invalid) as err:
        q("Patient", ("_count", bad))
    assert err.value.expression == ("_count",)


def test_includes_and_revincludes() -> None:
    query = q(
        "Observation",
        ("_include", "Observation:patient"),
        ("_include:iterate", "Patient:general-practitioner:Practitioner"),
        ("_revinclude", "Provenance:target"),
        ("_include", "Observation:*"),
        ("_include", "*"),
    )
    a, b, c, d, e = query.includes
    assert (a.source_type, a.param_code, a.iterate, a.reverse) == ("Observation", "patient", False, False)
    assert a.param_ids == (parameters.param_id("Observation", "patient"),)
    assert (b.target_type, b.iterate) == ("Practitioner", True)
    assert c.reverse and c.param_ids == (parameters.param_id("Provenance", "target"),)
    assert d.param_code == "*" and parameters.param_id("Observation", "subject") in d.param_ids
    assert e.source_type == "*"


@pytest.mark.parametrize("bad", ["Observation", "Observation:code", "Observation:patient:Nope"])
def test_bad_include_is_rejected(bad: str) -> None:
    with pytest.raises(Invalid):
        q("Observation", ("_include", bad))


def test_summary_total_and_elements() -> None:
    query = q("Patient", ("_summary", "count"), ("_total", "accurate"), ("_elements", "name,gender"))
    assert (query.summary, query.total, query.elements) == ("count", "accurate", ("name", "gender"))
    for name, bad in [("_summary", "maybe"), ("_total", "all"), ("_elements", "a,,b")]:
        with pytest.raises(Invalid):
            q("Patient", (name, bad))


def test_system_search_with_type_restricts_the_types() -> None:
    query = q(None, ("_type", "Patient,Observation"), ("_lastUpdated", "gt2020"))
    assert query.types == ("Patient", "Observation")


def test_system_search_without_type_accepts_parameters_of_every_type() -> None:
    f = only_filter(q(None, ("_tag", "x")))
    assert parameters.param_id("Goal", "_tag") in f.param.ids
    with pytest.raises(Invalid):
        q(None, ("name", "x"))


def test_system_search_rejects_parameters_not_common_to_the_types() -> None:
    with pytest.raises(Invalid):
        q(None, ("_type", "Patient,Observation"), ("name", "x"))
    query = q(None, ("_type", "Patient,Observation"), ("_tag", "x"))
    f = only_filter(query)
    assert f.param.ids == (parameters.param_id("Patient", "_tag"), parameters.param_id("Observation", "_tag"))


def test_type_parameter_on_a_type_search_is_rejected() -> None:
    with pytest.raises(Invalid):
        q("Patient", ("_type", "Observation"))


def test_empty_values_are_left_out() -> None:
    query = q("Patient", ("name", ""))
    assert query.criteria == () and query.ignored == (("name", ""),)


def test_format_is_not_a_search_parameter() -> None:
    assert q("Patient", ("_format", "json")).used == ()


def test_cursor_round_trips_for_the_same_sort() -> None:
    token = encode_cursor("-birthdate", [123], 7)
    query = q("Patient", ("_sort", "-birthdate"), ("_cursor", token))
    assert query.cursor is not None and query.cursor.keys == (123,) and query.cursor.pk == 7
    assert ("_cursor", token) not in query.used


def test_cursor_for_another_sort_or_garbage_is_a_400() -> None:
    token = encode_cursor("family", ["x"], 7)
    with pytest.raises(Invalid):
        q("Patient", ("_sort", "-birthdate"), ("_cursor", token))
    with pytest.raises(Invalid):
        q("Patient", ("_cursor", "!!!"))


@given(
    st.lists(
        st.one_of(st.none(), st.integers(), st.text(max_size=8), st.floats(allow_nan=False)), max_size=3
    ),
    st.integers(min_value=0, max_value=2**62),
)
def test_any_cursor_position_round_trips(keys: list[object], pk: int) -> None:
    sig = ",".join(["_id"] * len(keys))
    pairs = [("_sort", sig)] if keys else []
    query = q("Patient", *pairs, ("_cursor", encode_cursor(sig, keys, pk)))
    assert query.cursor is not None and list(query.cursor.keys) == keys and query.cursor.pk == pk


@given(st.text(max_size=40))
def test_parse_never_raises_anything_but_a_400(value: str) -> None:
    for name in ("birthdate", "name", "identifier", "general-practitioner", "_id", "_lastUpdated"):
        try:
            q("Patient", (name, value))
        except Invalid as err:
            assert err.status == 400


def test_result_parameters_are_the_table_of_the_spec() -> None:
    assert set(RESULT_PARAMETERS) == {
        "_type",
        "_sort",
        "_count",
        "_include",
        "_revinclude",
        "_summary",
        "_elements",
        "_total",
        "_cursor",
    }


@pytest.mark.parametrize("name", ["_count:x", "_summary:x", "_total:x", "_elements:x"])
def test_a_modifier_on_a_result_parameter_without_modifiers_makes_it_an_unknown_parameter(name: str) -> None:
    with pytest.raises(UnknownParameter, match="unknown search parameter"):
        q("Patient", (name, "true"))


@pytest.mark.parametrize("name", ["_sort:up", "_include:deep", "_revinclude:deep"])
def test_an_unknown_modifier_on_a_result_parameter_is_a_400_naming_it(name: str) -> None:
    with pytest.raises(UnknownParameter, match="unknown modifier"):
        q("Patient", (name, "Observation:subject" if "include" in name else "name"))
