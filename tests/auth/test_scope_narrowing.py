"""Refresh with a narrower scope and grants within a client's policy (https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#refresh-access-token, https://hl7.org/fhir/smart-app-launch/STU2.2/backend-services.html#evaluate-requested-access)."""

from __future__ import annotations

import pytest

from fhir_server.auth.scopes import ScopeNotGranted, grantable, narrow, parse

GRANTED = parse(
    "launch/patient openid fhirUser offline_access patient/Observation.rs patient/Condition.cruds"
)


def test_refresh_without_scope_parameter_keeps_the_granted_scopes() -> None:
    assert narrow(GRANTED, None) == GRANTED


def test_refresh_may_ask_for_a_subset_of_the_granted_scopes() -> None:
    requested = parse("patient/Observation.r patient/Condition.rs openid")
    assert narrow(GRANTED, requested) == requested


def test_refresh_may_add_granular_restrictions() -> None:
    requested = parse("patient/Observation.rs?category=vital-signs")
    assert narrow(GRANTED, requested) == requested


def test_refresh_may_combine_split_grants_into_one_scope() -> None:
    granted = parse("patient/Observation.r patient/Observation.s")
    assert narrow(granted, parse("patient/Observation.rs")) == parse("patient/Observation.rs")


def test_refresh_may_use_v1_syntax_for_an_equivalent_v2_grant() -> None:
    assert narrow(parse("patient/*.rs"), parse("patient/Observation.read")) == parse(
        "patient/Observation.read"
    )


@pytest.mark.parametrize(
    "requested",
    [
        "patient/Observation.rsu",  # more interactions
        "patient/*.rs",  # more types
        "user/Observation.rs",  # another context
        "patient/Procedure.r",
        "online_access",  # a named scope never granted
        "launch/encounter",
        "patient/Observation.sr",  # unparseable: cannot be shown to be within the grant
    ],
)
def test_refresh_asking_for_more_than_granted_is_refused(requested: str) -> None:
    with pytest.raises(ScopeNotGranted) as caught:
        narrow(GRANTED, parse(f"patient/Observation.r {requested}"))
    assert caught.value.scopes == (requested,)


def test_a_granular_grant_does_not_cover_the_unrestricted_scope() -> None:
    with pytest.raises(ScopeNotGranted):
        narrow(parse("patient/Observation.rs?category=laboratory"), parse("patient/Observation.rs"))


def test_backend_client_gets_the_requested_scopes_within_its_policy() -> None:
    allowed = parse("system/Observation.rs system/Patient.rs")
    granted = grantable(parse("system/Observation.rs system/Patient.r system/Encounter.rs"), allowed)
    assert granted == parse("system/Observation.rs system/Patient.r")
    assert granted.ignored == ("system/Encounter.rs",)


def test_a_partly_allowed_scope_is_cut_down_to_its_intersection() -> None:
    allowed = parse("system/Observation.rs?category=laboratory system/Patient.r")
    granted = grantable(parse("system/*.cruds"), allowed)
    assert granted == parse("system/Observation.rs?category=laboratory system/Patient.r")


def test_v1_scopes_within_policy_are_granted_in_their_own_syntax() -> None:
    assert grantable(parse("system/*.read"), parse("system/*.cruds")).to_string() == "system/*.read"
