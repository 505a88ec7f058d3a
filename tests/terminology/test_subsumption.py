"""Subsumption over the hierarchy of shipped code systems (https://hl7.org/fhir/R4/codesystem.html#hierarchy)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_server.errors import Invalid, Unprocessable
from terminology import codesystems, filters, subsumption

from .package_oracle import codes, is_a

ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ROLE_CODES = codes("CodeSystem-v3-RoleCode")


def test_below_is_the_concept_and_everything_it_subsumes() -> None:
    got = subsumption.related(ROLE_CODE, "CHILD", "below")
    assert got[0] == (ROLE_CODE, "CHILD")
    assert {c for _, c in got} == is_a("CodeSystem-v3-RoleCode", "CHILD")


def test_above_is_the_concept_and_everything_subsuming_it() -> None:
    got = {c for _, c in subsumption.related(ROLE_CODE, "DAUADOPT", "above")}
    assert {"DAUADOPT", "DAUC", "CHLDADOPT", "CHILD", "FAMMEMB"} <= got
    assert got == {c for c in ROLE_CODES if "DAUADOPT" in is_a("CodeSystem-v3-RoleCode", c)}


def test_a_code_without_system_uses_every_shipped_system_defining_it() -> None:
    got = subsumption.related(None, "CHILD", "below")
    assert {s for s, _ in got} == {cs.url for cs in codesystems.containing("CHILD")}
    assert (ROLE_CODE, "SON") in got


def test_outcomes() -> None:
    assert subsumption.outcome(ROLE_CODE, "CHILD", "CHILD") == "equivalent"
    assert subsumption.outcome(ROLE_CODE, "CHILD", "DAUADOPT") == "subsumes"
    assert subsumption.outcome(ROLE_CODE, "DAUADOPT", "CHILD") == "subsumed-by"
    assert subsumption.outcome(ROLE_CODE, "SON", "DAU") == "not-subsumed"


def test_systems_the_server_lacks_in_full_are_refused() -> None:
    with pytest.raises(Unprocessable, match=re.escape("http://snomed.info/sct")):
        subsumption.related("http://snomed.info/sct", "73211009", "below")
    with pytest.raises(Unprocessable, match=re.escape("http://loinc.org")):
        subsumption.related("http://loinc.org", "8867-4", "above")


def test_unknown_codes_are_a_bad_request() -> None:
    with pytest.raises(Invalid, match="NOPE"):
        subsumption.related(ROLE_CODE, "NOPE", "below")
    with pytest.raises(Invalid, match="NOPE-NOWHERE"):
        subsumption.related(None, "NOPE-NOWHERE", "below")


@given(a=st.sampled_from(ROLE_CODES), b=st.sampled_from(ROLE_CODES))
def test_subsumes_and_subsumed_by_are_converse(a: str, b: str) -> None:
    forward = subsumption.outcome(ROLE_CODE, a, b)
    backward = subsumption.outcome(ROLE_CODE, b, a)
    converse = {"subsumes": "subsumed-by", "subsumed-by": "subsumes"}
    assert backward == converse.get(forward, forward)
    assert (forward in ("subsumes", "equivalent")) == (b in is_a("CodeSystem-v3-RoleCode", a))


@given(code=st.sampled_from(codes("CodeSystem-v3-ActCode")))
def test_filter_algebra_over_the_hierarchy(code: str) -> None:
    cs = codesystems.get(ACT_CODE)
    assert cs is not None

    def select(op: str) -> set[str]:
        return filters.select(cs, {"property": "concept", "op": op, "value": code})

    below = select("is-a")
    assert below == {code} | select("descendent-of")
    assert select("is-not-a") == set(cs.concepts) - below
    assert below == {c for _, c in subsumption.related(ACT_CODE, code, "below")}
    assert all(code in {c for _, c in subsumption.related(ACT_CODE, d, "above")} for d in below)
