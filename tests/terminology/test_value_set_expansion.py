"""Value set expansion follows the compose rules (https://hl7.org/fhir/R4/valueset.html#compositions)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_server.errors import Invalid, NotFound, Unprocessable
from terminology import valuesets
from terminology.service import service

from .package_oracle import codes, is_a, resource

ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def keys(url: str) -> list[tuple[str | None, str]]:
    return [c.key for c in service().expansion(url).contains]


def test_administrative_gender_is_the_four_codes_in_order() -> None:
    system = "http://hl7.org/fhir/administrative-gender"
    assert keys("http://hl7.org/fhir/ValueSet/administrative-gender") == [
        (system, c) for c in codes("CodeSystem-administrative-gender")
    ]


def test_observation_category_is_every_code_of_its_code_system() -> None:
    system = "http://terminology.hl7.org/CodeSystem/observation-category"
    expansion = service().expansion("http://hl7.org/fhir/ValueSet/observation-category")
    assert [c.key for c in expansion.contains] == [
        (system, c) for c in codes("CodeSystem-observation-category")
    ]
    assert expansion.used_systems == (f"{system}|4.0.1",)
    vital = expansion.find(system, "vital-signs")
    assert vital is not None and vital.display == "Vital Signs"


def test_is_a_filter_follows_nesting_and_child_properties() -> None:
    got = {code for system, code in keys("http://terminology.hl7.org/ValueSet/v3-FamilyMember")}
    assert got == is_a("CodeSystem-v3-RoleCode", "FAMMEMB")
    assert {"DAUADOPT", "DAUC", "CHILD", "FAMMEMB"} <= got  # DAUADOPT: a `child` of DAUC, nested elsewhere


def test_exclude_removes_listed_concepts() -> None:
    got = {code for _, code in keys("http://terminology.hl7.org/ValueSet/v3-ActEncounterCode")}
    assert got == is_a("CodeSystem-v3-ActCode", "_ActEncounterCode") - {"_ActEncounterCode"}


def test_is_not_a_filter_keeps_the_rest_of_the_code_system() -> None:
    got = [code for _, code in keys("http://hl7.org/fhir/ValueSet/patient-contactrelationship")]
    assert got == [c for c in codes("CodeSystem-v2-0131") if c != "O"]


def test_imported_value_sets_are_united_across_includes() -> None:
    both = set(keys("http://hl7.org/fhir/ValueSet/event-or-request-resource-types"))
    events = set(keys("http://hl7.org/fhir/ValueSet/event-resource-types"))
    requests = set(keys("http://hl7.org/fhir/ValueSet/request-resource-types"))
    assert both == events | requests and events - requests and requests - events


def test_import_and_listed_concepts_of_the_package_match_its_own_expansion() -> None:
    shipped = resource("ValueSet-yesnodontknow")["expansion"]["contains"]
    assert set(keys("http://hl7.org/fhir/ValueSet/yesnodontknow")) == {
        (c["system"], c["code"]) for c in shipped
    }


def test_abstract_concepts_are_marked() -> None:
    expansion = service().expansion("http://terminology.hl7.org/ValueSet/v3-ActCoverageTypeCode")
    top = expansion.find(ACT_CODE, "_ActCoverageTypeCode")
    assert top is not None and top.abstract
    leaf = next(c for c in expansion.contains if not c.abstract)
    assert leaf.system == ACT_CODE


def test_include_intersects_its_system_with_imported_value_sets() -> None:
    vs = {
        "url": "http://example.org/vs/family-children",
        "compose": {
            "include": [
                {
                    "system": ROLE_CODE,
                    "filter": [{"property": "concept", "op": "is-a", "value": "CHILD"}],
                    "valueSet": ["http://terminology.hl7.org/ValueSet/v3-FamilyMember"],
                }
            ]
        },
    }
    got = {c.code for c in valuesets.expand(vs).contains}
    assert got == is_a("CodeSystem-v3-RoleCode", "CHILD")


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("descendent-of", "CHILD", lambda: is_a("CodeSystem-v3-RoleCode", "CHILD") - {"CHILD"}),
        ("=", "CHILD", lambda: {"CHILD"}),
        ("in", "CHILD,SON", lambda: {"CHILD", "SON"}),
        ("regex", "DAU.*", lambda: {c for c in codes("CodeSystem-v3-RoleCode") if c.startswith("DAU")}),
        (
            "generalizes",
            "DAUADOPT",
            lambda: {
                c for c in codes("CodeSystem-v3-RoleCode") if "DAUADOPT" in is_a("CodeSystem-v3-RoleCode", c)
            },
        ),
    ],
)
def test_filter_operators(op: str, value: str, expected: Callable[[], set[str]]) -> None:
    vs = {
        "url": "http://example.org/vs/filtered",
        "compose": {
            "include": [{"system": ROLE_CODE, "filter": [{"property": "concept", "op": op, "value": value}]}]
        },
    }
    got = {c.code for c in valuesets.expand(vs).contains}
    assert got == expected()


def test_a_canonical_with_version_picks_that_version() -> None:
    url = "http://hl7.org/fhir/ValueSet/administrative-gender"
    assert keys(f"{url}|4.0.1") == keys(url)
    with pytest.raises(NotFound, match=r"version 9\.9"):
        service().expansion(url, "9.9")


def test_an_unknown_value_set_is_not_found() -> None:
    with pytest.raises(NotFound, match=re.escape("http://example.org/no-such-vs")):
        service().expansion("http://example.org/no-such-vs")


def test_a_value_set_over_snomed_ct_is_refused_naming_it_and_the_system() -> None:
    url = "http://hl7.org/fhir/ValueSet/condition-code"
    with pytest.raises(Unprocessable) as caught:
        service().expansion(url)
    assert url in caught.value.message and "http://snomed.info/sct" in caught.value.message


def test_an_import_that_cannot_be_expanded_names_the_outer_value_set() -> None:
    url = "http://hl7.org/fhir/ValueSet/media-modality"  # imports DICOM CID 29, which is not shipped
    with pytest.raises(Unprocessable) as caught:
        service().expansion(url)
    assert caught.value.message.startswith(f"ValueSet {url} cannot be expanded")


def test_listed_concepts_of_unshipped_systems_are_expanded_as_listed() -> None:
    vs = {
        "url": "http://example.org/vs/loinc",
        "compose": {
            "include": [
                {"system": "http://loinc.org", "concept": [{"code": "8867-4", "display": "Heart rate"}]}
            ]
        },
    }
    (only,) = valuesets.expand(vs).contains
    assert (only.system, only.code, only.display) == ("http://loinc.org", "8867-4", "Heart rate")


def test_a_value_set_importing_itself_is_refused() -> None:
    url = "http://example.org/vs/loop"
    vs = {"url": url, "compose": {"include": [{"valueSet": [url]}]}}
    with pytest.raises(Unprocessable, match="includes itself"):
        valuesets.expand(vs, lambda u, v: vs if u == url else None)


def test_unsupported_filters_and_unknown_properties_are_refused() -> None:
    bad_op = {
        "url": "x",
        "compose": {
            "include": [
                {"system": ROLE_CODE, "filter": [{"property": "concept", "op": "child-of", "value": "X"}]}
            ]
        },
    }
    with pytest.raises(Unprocessable, match="child-of"):
        valuesets.expand(bad_op)
    with pytest.raises(Unprocessable, match="acme-plasma"):
        service().expansion("http://hl7.org/fhir/ValueSet/example-filter")


def test_a_malformed_compose_is_a_bad_request() -> None:
    with pytest.raises(Invalid):
        valuesets.expand({"url": "x", "compose": {"include": [{}]}})
    with pytest.raises(Invalid):
        valuesets.expand(
            {
                "url": "x",
                "compose": {
                    "include": [
                        {"system": ROLE_CODE, "filter": [{"property": "code", "op": "regex", "value": "("}]}
                    ]
                },
            }
        )


def test_implicit_value_set_of_a_shipped_code_system() -> None:
    assert {c for _, c in keys(f"{ROLE_CODE}?fhir_vs=isa/CHILD")} == is_a("CodeSystem-v3-RoleCode", "CHILD")
    assert len(keys(f"{ROLE_CODE}?fhir_vs")) == len(codes("CodeSystem-v3-RoleCode"))


def test_most_shipped_value_sets_expand() -> None:
    expanded = refused = 0
    for url in valuesets.urls():
        try:
            service().expansion(url)
            expanded += 1
        except (Unprocessable, NotFound):
            refused += 1
    assert expanded > 1100 and refused < 150


@given(url=st.text(min_size=1).filter(lambda u: "|" not in u), version=st.text())
def test_a_canonical_splits_at_the_bar_into_url_and_version(url: str, version: str) -> None:
    assert valuesets.split_canonical(url) == (url, None)
    assert valuesets.split_canonical(f"{url}|{version}") == (url, version or None)
