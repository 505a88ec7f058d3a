"""Patient compartment (https://hl7.org/fhir/R4/compartmentdefinition-patient.html)."""

from __future__ import annotations

from fhir_server.search import parameters
from fhir_server.search.compartment import patient_compartment_params


def test_observation_links_to_the_patient_through_subject_and_performer() -> None:
    assert patient_compartment_params("Observation") == ("subject", "performer")


def test_patient_links_to_other_patients_through_link() -> None:
    assert patient_compartment_params("Patient") == ("link",)


def test_types_outside_the_compartment_have_no_params() -> None:
    assert patient_compartment_params("Organization") == ()
    assert patient_compartment_params("NoSuchType") == ()


def test_every_compartment_param_is_a_registered_parameter() -> None:
    for resource_type in parameters.resource_types():
        for code in patient_compartment_params(resource_type):
            assert parameters.get(resource_type, code) is not None, (resource_type, code)
