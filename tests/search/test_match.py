"""Matching a resource against a grant's restriction (https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html)."""

from __future__ import annotations

import orjson

from fhir_server.auth.principal import Grant
from fhir_server.search import match

VITALS = ("category", "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs")


def observation(category: str, subject: str) -> bytes:
    system = "http://terminology.hl7.org/CodeSystem/observation-category"
    return orjson.dumps(
        {
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "category": [{"coding": [{"system": system, "code": category}]}],
            "code": {"text": "x"},
            "subject": {"reference": subject},
        }
    )


def test_a_version_matches_a_token_restriction_on_its_own_content() -> None:
    grant = Grant(query=(VITALS,))
    assert match.version_matches("Observation", observation("vital-signs", "Patient/1"), [grant], "")
    assert not match.version_matches("Observation", observation("laboratory", "Patient/1"), [grant], "")


def test_a_version_matches_one_of_several_restrictions() -> None:
    grants = [Grant(query=(VITALS,)), Grant(compartment="Patient/1")]
    assert match.version_matches("Observation", observation("laboratory", "Patient/1"), grants, "")
    assert not match.version_matches("Observation", observation("laboratory", "Patient/2"), grants, "")


def test_a_version_is_in_a_compartment_by_a_local_or_own_absolute_reference_only() -> None:
    grant = Grant(compartment="Patient/1")
    base = "https://fhir.example/r4"
    assert match.version_matches("Observation", observation("x", f"{base}/Patient/1"), [grant], base)
    assert not match.version_matches(
        "Observation", observation("x", "https://other/Patient/1"), [grant], base
    )


def test_a_patient_is_in_its_own_compartment() -> None:
    patient = orjson.dumps({"resourceType": "Patient", "id": "1"})
    assert match.version_matches("Patient", patient, [Grant(compartment="Patient/1")], "")
    assert not match.version_matches("Patient", patient, [Grant(compartment="Patient/2")], "")


def test_a_restriction_not_evaluable_on_a_version_never_matches_it() -> None:
    content = observation("vital-signs", "Patient/1")
    assert not match.version_matches("Observation", content, [Grant(query=(("date", "ge2020"),))], "")
    assert not match.version_matches("Observation", content, [Grant(query=(("category:not", "x"),))], "")


def test_a_restriction_the_type_cannot_be_searched_by_has_no_condition() -> None:
    assert match.condition(Grant(query=(VITALS,)), "Patient", "") is None
    assert match.condition(Grant(query=(VITALS,)), "Observation", "") is not None
