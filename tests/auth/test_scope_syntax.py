"""Parsing SMART scope strings (https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html)."""

from __future__ import annotations

import pytest

from fhir_server.auth.scopes import LaunchScope, ResourceScope, ScopeSet, parse

VITALS = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"


def test_v2_resource_scope_is_parsed_into_context_type_and_interactions() -> None:
    scopes = parse("patient/Observation.rs")
    assert scopes.resources == {ResourceScope("patient", "Observation", "rs")}
    assert scopes.ignored == ()


@pytest.mark.parametrize(
    ("token", "letters"),
    [("patient/*.read", "rs"), ("user/Observation.write", "cud"), ("system/*.*", "cruds")],
)
def test_v1_verbs_mean_their_v2_letters(token: str, letters: str) -> None:
    (scope,) = parse(token).resources
    assert scope.interactions == letters
    assert scope.v1
    assert str(scope) == token


def test_every_in_order_subset_of_cruds_is_a_valid_v2_suffix() -> None:
    for suffix in ["c", "r", "u", "d", "s", "rs", "cud", "cruds", "cs", "ud"]:
        (scope,) = parse(f"system/Patient.{suffix}").resources
        assert scope.interactions == suffix


@pytest.mark.parametrize(
    "token",
    [
        "patient/Observation.sr",  # out of order
        "patient/Observation.rrs",  # repeated
        "patient/Observation.dus",  # the spec's own example of an undefined request
        "patient/Observation.x",
        "patient/Observation.",
        "patient/Observation",
        "Patient/Observation.rs",  # contexts are lowercase
        "practitioner/Observation.rs",
        "patient/observation.rs",  # resource types start uppercase
        "patient/Observation.read?category=x",  # v1 has no granular form
        "patient/Observation.rs?category",  # param without value
        "patient/Observation.rs?category=",
        "patient/Observation.rs?",
        "patient/Observation.rs?bad$name=x",
        "launch/Patient",
        "launch?role=x",
        "openId",
        "https://ehr.example.org/scopes/profilePhoto.manage",
        "__custom",
    ],
)
def test_unknown_or_invalid_tokens_are_ignored_not_errors(token: str) -> None:
    scopes = parse(f"openid {token} patient/Patient.r")
    assert scopes.ignored == (token,)
    assert scopes.named == {"openid"}
    assert scopes.resources == {ResourceScope("patient", "Patient", "r")}


def test_granular_scope_keeps_its_search_parameters() -> None:
    (scope,) = parse(f"patient/Observation.rs?category={VITALS}").resources
    assert scope.query == (("category", VITALS),)
    assert str(scope) == f"patient/Observation.rs?category={VITALS}"


def test_granular_parameters_are_anded_so_their_order_does_not_matter() -> None:
    a = parse("patient/Observation.rs?code=http://loinc.org|8867-4&category=vital-signs")
    b = parse("patient/Observation.rs?category=vital-signs&code=http://loinc.org|8867-4")
    assert a == b


def test_granular_values_are_percent_decoded() -> None:
    (scope,) = parse("patient/Observation.rs?category=vital%2Dsigns%26more").resources
    assert scope.query == (("category", "vital-signs&more"),)
    assert str(scope) == "patient/Observation.rs?category=vital-signs%26more"


def test_modifiers_and_chains_are_kept_as_parameter_names() -> None:
    scopes = parse(
        "patient/Observation.rs?code:in=http://x.org/ValueSet/d user/Observation.rs?patient.birthdate=1990"
    )
    assert {q for s in scopes.resources for q in s.query} == {
        ("code:in", "http://x.org/ValueSet/d"),
        ("patient.birthdate", "1990"),
    }


def test_identity_refresh_and_launch_scopes_are_recognised() -> None:
    scopes = parse(
        "openid fhirUser profile launch launch/patient launch/encounter offline_access online_access"
    )
    assert scopes.named == {"openid", "fhirUser", "profile", "offline_access", "online_access"}
    assert scopes.launch == {LaunchScope(), LaunchScope("patient"), LaunchScope("encounter")}
    assert scopes.launch_contexts == {"patient", "encounter"}
    assert scopes.has("launch/patient") and scopes.has("openid") and not scopes.has("launch/imagingstudy")
    assert scopes.ignored == ()


def test_extra_launch_contexts_are_lowercase_types_with_an_optional_role() -> None:
    scopes = parse("launch/imagingstudy launch/questionnaire?role=http://example.org/roles/new")
    assert scopes.launch == {
        LaunchScope("imagingstudy"),
        LaunchScope("questionnaire", "http://example.org/roles/new"),
    }


def test_patient_scopes_or_launch_patient_need_a_patient_in_context() -> None:
    assert parse("patient/*.rs").needs_patient
    assert parse("launch/patient user/*.rs").needs_patient
    assert not parse("user/*.rs system/*.rs openid").needs_patient


def test_permits_returns_the_scopes_granting_an_interaction_with_their_restrictions() -> None:
    scopes = parse(
        f"patient/Observation.rs?category={VITALS} patient/Observation.r?category=laboratory "
        "patient/*.c user/Patient.rs"
    )
    assert [s.query for s in scopes.permits("patient", "Observation", "r")] == [
        (("category", "laboratory"),),  # sorted: ".r" before ".rs"
        (("category", VITALS),),
    ]
    assert [s.query for s in scopes.permits("patient", "Observation", "s")] == [(("category", VITALS),)]
    assert [str(s) for s in scopes.permits("patient", "Condition", "c")] == ["patient/*.c"]
    assert scopes.permits("patient", "Condition", "r") == []
    assert scopes.permits("user", "Observation", "r") == []
    assert [str(s) for s in scopes.permits("user", "Patient", "s")] == ["user/Patient.rs"]


def test_all_types_at_once_is_only_permitted_by_wildcard_scopes() -> None:
    assert parse("system/Observation.rs").permits("system", "*", "s") == []
    assert [str(s) for s in parse("system/*.rs").permits("system", "*", "s")] == ["system/*.rs"]


def test_known_resource_types_can_be_enforced_while_parsing() -> None:
    scopes = parse("patient/Observation.rs patient/Foo.rs patient/*.r", resource_types={"Observation"})
    assert {s.resource_type for s in scopes.resources} == {"Observation", "*"}
    assert scopes.ignored == ("patient/Foo.rs",)


def test_to_string_is_sorted_space_separated_and_drops_ignored_tokens() -> None:
    assert (
        parse("patient/Observation.rs openid bogus launch").to_string()
        == "launch openid patient/Observation.rs"
    )
    assert parse("").to_string() == "" and parse(None) == ScopeSet()


def test_scope_values_validate_themselves() -> None:
    with pytest.raises(ValueError, match="in-order"):
        ResourceScope("patient", "Observation", "sr")
    with pytest.raises(ValueError, match="v1"):
        ResourceScope("patient", "Observation", "r", v1=True)
    with pytest.raises(ValueError, match="sorted"):
        ResourceScope("patient", "Observation", "r", (("code", "b"), ("category", "a")))
    with pytest.raises(ValueError, match="named"):
        ScopeSet(named=frozenset({"patient/*.rs"}))
