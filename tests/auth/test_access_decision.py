"""The access decision for a principal's scopes (https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html#scopes-for-requesting-clinical-data)."""

from __future__ import annotations

import pytest

from fhir_server.auth.principal import Access, Denied, FhirInteraction, Grant, Principal, decide
from fhir_server.auth.scopes import parse

VITALS = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"
LABS = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"


def patient_app(scopes: str, patient: str | None = "123") -> Principal:
    return Principal("app", "patient", parse(scopes), "u1", "Patient/123", patient)


def clinician(scopes: str, patient: str | None = None) -> Principal:
    return Principal("ehr-app", "user", parse(scopes), "u9", "Practitioner/9", patient)


def backend(scopes: str) -> Principal:
    return Principal("bulk-client", "system", parse(scopes))


def allowed(decision: Access | Denied) -> Access:
    assert isinstance(decision, Access), decision
    return decision


def denied(decision: Access | Denied) -> str:
    assert isinstance(decision, Denied), decision
    return decision.reason


INTERACTION_NEEDS: list[tuple[FhirInteraction, bool, str]] = [
    ("read", False, "r"),
    ("vread", False, "r"),
    ("history", True, "r"),  # instance history
    ("search", False, "s"),
    ("history", False, "s"),  # type and system history
    ("create", False, "c"),
    ("update", False, "u"),  # also update-as-create
    ("patch", False, "u"),
    ("delete", False, "d"),
]


@pytest.mark.parametrize(("interaction", "instance", "letter"), INTERACTION_NEEDS)
def test_each_interaction_needs_its_smart_permission(
    interaction: FhirInteraction, instance: bool, letter: str
) -> None:
    for other in "cruds":
        principal = backend(f"system/Observation.{other}")
        decision = decide(principal, interaction, "Observation", instance=instance)
        assert isinstance(decision, Access) == (other == letter), (interaction, other)


def test_patient_scopes_are_confined_to_the_patient_in_context() -> None:
    access = allowed(decide(patient_app("patient/Observation.rs"), "search", "Observation"))
    assert access.grants == (Grant("Patient/123"),)
    assert access.compartments == {"Patient/123"} and not access.unrestricted


def test_patient_scopes_without_a_patient_in_context_are_refused() -> None:
    reason = denied(decide(clinician("patient/Observation.rs"), "read", "Observation"))
    assert "patient" in reason


def test_v1_and_v2_patient_scopes_decide_alike() -> None:
    for interaction in ("read", "search", "create", "update", "delete"):
        v1 = decide(patient_app("patient/*.read"), interaction, "Condition")
        v2 = decide(patient_app("patient/*.rs"), interaction, "Condition")
        assert type(v1) is type(v2)
        if isinstance(v1, Access) and isinstance(v2, Access):
            assert v1.grants == v2.grants


def test_granular_scope_adds_its_query_to_the_grant() -> None:
    access = allowed(
        decide(patient_app(f"patient/Observation.rs?category={VITALS}"), "search", "Observation")
    )
    assert access.grants == (Grant("Patient/123", (("category", VITALS),)),)


def test_several_granular_scopes_are_alternatives() -> None:
    principal = patient_app(
        f"patient/Observation.rs?category={VITALS} patient/Observation.rs?category={LABS}"
    )
    access = allowed(decide(principal, "read", "Observation"))
    assert set(access.grants) == {
        Grant("Patient/123", (("category", VITALS),)),
        Grant("Patient/123", (("category", LABS),)),
    }


def test_an_unrestricted_scope_makes_granular_ones_redundant() -> None:
    principal = patient_app(f"patient/Observation.rs?category={VITALS} patient/*.rs")
    assert allowed(decide(principal, "read", "Observation")).grants == (Grant("Patient/123"),)


def test_granular_scope_for_one_interaction_does_not_restrict_another() -> None:
    principal = patient_app(f"patient/Observation.r patient/Observation.s?category={VITALS}")
    assert allowed(decide(principal, "read", "Observation")).grants == (Grant("Patient/123"),)
    assert allowed(decide(principal, "search", "Observation")).grants == (
        Grant("Patient/123", (("category", VITALS),)),
    )


def test_user_scopes_of_a_clinician_are_not_confined_to_a_patient() -> None:
    access = allowed(decide(clinician("user/Observation.rs"), "search", "Observation"))
    assert access.unrestricted


def test_user_scopes_of_a_patient_user_cover_only_their_own_record() -> None:
    principal = Principal("portal", "patient", parse("user/*.rs"), "u1", "Patient/77")
    assert allowed(decide(principal, "search", "Observation")).grants == (Grant("Patient/77"),)


def test_user_scopes_of_a_related_person_cover_the_patient_in_context() -> None:
    principal = Principal("portal", "patient", parse("user/*.rs"), "u2", "RelatedPerson/5", "123")
    assert allowed(decide(principal, "read", "Observation")).grants == (Grant("Patient/123"),)
    alone = Principal("portal", "patient", parse("user/*.rs"), "u2", "RelatedPerson/5")
    denied(decide(alone, "read", "Observation"))


def test_a_clinician_launched_with_a_patient_may_hold_both_patient_and_user_scopes() -> None:
    principal = clinician("patient/Observation.rs user/Practitioner.rs", patient="123")
    assert allowed(decide(principal, "read", "Observation")).grants == (Grant("Patient/123"),)
    assert allowed(decide(principal, "read", "Practitioner")).unrestricted
    denied(decide(principal, "read", "Condition"))


def test_system_scopes_serve_backend_clients_within_their_policy() -> None:
    access = allowed(decide(backend("system/*.rs"), "search", "Observation"))
    assert access.unrestricted
    denied(decide(backend("system/*.rs"), "create", "Observation"))


def test_system_scopes_are_not_honoured_for_user_facing_apps_and_vice_versa() -> None:
    denied(decide(clinician("system/*.cruds"), "read", "Observation"))
    denied(decide(backend("user/*.cruds patient/*.cruds"), "read", "Observation"))


def test_wildcard_covers_every_resource_type() -> None:
    for resource_type in ("Observation", "Patient", "SomeFutureResource"):
        allowed(decide(backend("system/*.rs"), "read", resource_type))


def test_search_across_all_types_needs_a_wildcard_scope() -> None:
    denied(decide(backend("system/Observation.rs system/Patient.rs"), "search", "*"))
    allowed(decide(backend("system/*.s"), "search", "*"))
    allowed(decide(backend("system/*.s"), "history", "*"))


def test_operations_must_declare_the_permissions_they_need() -> None:
    principal = patient_app("patient/*.rs")
    assert "declare" in denied(decide(principal, "operation", "Patient"))
    assert "declare" in denied(decide(principal, "operation", "Patient", needs="rx"))
    access = allowed(decide(principal, "operation", "Patient", needs="sr"))
    assert access.needs == "rs" and access.grants == (Grant("Patient/123"),)
    denied(decide(principal, "operation", "Patient", needs="u"))


def test_an_operation_needing_several_permissions_gets_the_conjunction_of_their_restrictions() -> None:
    principal = patient_app(f"patient/Observation.r?category={VITALS} patient/Observation.s?code=8867-4")
    access = allowed(decide(principal, "operation", "Observation", needs="rs"))
    assert access.grants == (Grant("Patient/123", (("category", VITALS), ("code", "8867-4"))),)


def test_anonymous_development_mode_is_unrestricted() -> None:
    principal = Principal("dev", "anonymous-dev")
    for interaction, instance, _ in INTERACTION_NEEDS:
        assert allowed(decide(principal, interaction, "Observation", instance=instance)).unrestricted


def test_no_scopes_means_no_access() -> None:
    for kind in ("patient", "user", "system"):
        principal = Principal("app", kind, parse("openid fhirUser launch/patient"), patient="1")
        assert "no granted scope" in denied(decide(principal, "read", "Patient"))


def test_the_decision_names_the_scopes_that_granted_it() -> None:
    access = allowed(decide(patient_app("patient/Observation.rs patient/*.r"), "read", "Observation"))
    assert [str(s) for s in access.scopes] == ["patient/*.r", "patient/Observation.rs"]


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "robot"},
        {"fhir_user": "Organization/1"},
        {"fhir_user": "Practitioner/"},
        {"fhir_user": "https://ehr.example.org/Practitioner/9"},
        {"patient": "not an id"},
        {"encounter": ""},
    ],
)
def test_principal_refuses_malformed_identity_and_context(fields: dict[str, str]) -> None:
    values = {"client_id": "app", "kind": "user", **fields}
    with pytest.raises(ValueError):
        Principal(**values)  # type: ignore[arg-type]


def test_fhir_user_may_be_any_type_smart_allows() -> None:
    for resource_type in ("Patient", "Practitioner", "PractitionerRole", "RelatedPerson", "Person"):
        Principal("app", "user", fhir_user=f"{resource_type}/1")
