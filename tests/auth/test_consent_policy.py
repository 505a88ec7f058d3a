"""What a user may grant an app (fhir_server/auth/consent.py; https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html)."""

from __future__ import annotations

import pytest

from fhir_server.auth import consent
from fhir_server.auth.launch import LaunchContext
from fhir_server.auth.scopes import parse
from fhir_server.auth.users import User

PATIENT = User(1, "anna", "Patient/p1")
CLINICIAN = User(2, "dr", "Practitioner/c1")
NOBODY = User(3, "plain")


def offered(scope: str, user: User, context: LaunchContext = LaunchContext(), ehr: bool = False) -> list[str]:
    return [o.scope for o in consent.offers(parse(scope), user, context, ehr_launch=ehr)]


def test_a_patient_is_always_in_their_own_record() -> None:
    assert consent.patient_context(PATIENT, LaunchContext()).patient == "p1"
    assert consent.patient_context(PATIENT, LaunchContext(patient="p1")).patient == "p1"
    with pytest.raises(consent.WrongPatient):
        consent.patient_context(PATIENT, LaunchContext(patient="p2"))
    assert consent.patient_context(CLINICIAN, LaunchContext()).patient is None


def test_a_clinician_picks_a_patient_when_patient_context_is_asked_for() -> None:
    # SHALL 164
    assert consent.needs_patient_choice(parse("launch/patient"), CLINICIAN, LaunchContext())
    assert consent.needs_patient_choice(parse("patient/*.rs"), CLINICIAN, LaunchContext())
    assert not consent.needs_patient_choice(parse("user/*.rs"), CLINICIAN, LaunchContext())
    assert not consent.needs_patient_choice(parse("patient/*.rs"), CLINICIAN, LaunchContext(patient="p2"))


def test_system_scopes_are_never_offered_and_patient_scopes_only_with_a_patient() -> None:
    assert offered("system/*.rs user/*.rs patient/*.rs", CLINICIAN) == ["user/*.rs"]
    assert offered("patient/*.rs", CLINICIAN, LaunchContext(patient="p2")) == ["patient/*.rs"]


def test_launch_scopes_are_offered_only_when_the_launch_can_honour_them() -> None:
    context = LaunchContext(patient="p1")
    assert offered("launch launch/patient launch/encounter", CLINICIAN, context) == ["launch/patient"]
    ehr = LaunchContext(patient="p1", encounter="e1")
    assert offered("launch launch/encounter", CLINICIAN, ehr, ehr=True) == ["launch", "launch/encounter"]


def test_fhir_user_is_offered_only_to_users_with_a_fhir_resource() -> None:
    assert offered("openid fhirUser", NOBODY) == ["openid"]
    assert offered("openid fhirUser", CLINICIAN) == ["fhirUser", "openid"]


def test_only_offered_and_ticked_scopes_are_granted() -> None:
    requested = parse("patient/*.rs system/*.rs openid offline_access")
    context = LaunchContext(patient="p1")
    granted = consent.granted(
        requested, ["patient/*.rs", "system/*.rs", "profile"], PATIENT, context, ehr_launch=False
    )
    assert granted.to_string() == "patient/*.rs"


def test_offline_access_wins_over_online_access() -> None:
    requested = parse("openid offline_access online_access")
    granted = consent.granted(
        requested, ["offline_access", "online_access"], NOBODY, LaunchContext(), ehr_launch=False
    )
    assert granted.to_string() == "offline_access"


def test_the_token_carries_only_the_context_the_grant_covers() -> None:
    # SHALL 149, 170, 171, 172
    context = LaunchContext(
        "p1", "e1", ({"reference": "Appointment/a1"},), "review", need_patient_banner=False
    )
    ehr = consent.token_context(parse("launch"), context, ehr_launch=True)
    assert ehr == context
    narrow = consent.token_context(parse("launch/patient"), context, ehr_launch=False)
    assert narrow == LaunchContext("p1", need_patient_banner=True)
    assert consent.token_context(parse("user/*.rs"), context, ehr_launch=False).patient is None


def test_scope_descriptions_are_plain_language() -> None:
    scope = next(iter(parse("patient/Observation.rs?category=vital-signs").resources))
    assert consent.describe_resource(scope) == (
        "Read, search Observation records of the patient in context (only where category = vital-signs)"
    )
