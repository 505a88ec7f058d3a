"""The StructureDefinition validator (profiles/): each rule, with the issue code and FHIRPath it reports."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_server.errors import Issue
from profiles import validator
from tests import factories

HEARTRATE = "http://hl7.org/fhir/StructureDefinition/heartrate"
VITALSIGNS = "http://hl7.org/fhir/StructureDefinition/vitalsigns"


def errors(resource: Any, **kw: Any) -> list[Issue]:
    return [i for i in validator.issues(resource, **kw) if i.severity == "error"]


def where(resource: Any, **kw: Any) -> dict[str, str]:
    """expression -> issue code of every error."""
    return {i.expression[0]: i.code for i in errors(resource, **kw)}


def heart_rate(**extra: Any) -> dict[str, Any]:
    return factories.observation("p1", meta={"profile": [HEARTRATE]}, **extra)


def test_valid_resources_have_no_errors() -> None:
    assert errors(factories.patient()) == []
    assert errors(factories.observation("p1")) == []
    assert errors(heart_rate()) == []
    assert errors(factories.encounter("p1")) == []


def test_a_code_outside_a_required_binding() -> None:
    assert where(factories.observation("p1", status="bogus")) == {"Observation.status": "code-invalid"}
    assert where(factories.patient(gender="x")) == {"Patient.gender": "code-invalid"}


def test_a_missing_required_element_and_a_cardinality_overflow() -> None:
    obs = factories.observation("p1")
    del obs["status"]
    assert where(obs) == {"Observation.status": "required"}
    pat = factories.patient(gender=["female", "male"])
    assert where(pat) == {"Patient.gender": "structure"}
    enc = factories.encounter("p1", subject=[{"reference": "Patient/p1"}])
    assert where(enc) == {"Encounter.subject": "structure"}


def test_every_error_is_reported_at_once() -> None:
    obs = factories.observation("p1", status="bogus", foo=1)
    del obs["code"]
    assert where(obs) == {
        "Observation.status": "code-invalid",
        "Observation.foo": "structure",
        "Observation.code": "required",
    }


def test_obs_6_and_obs_7() -> None:
    both = factories.observation("p1", dataAbsentReason={"text": "lost"})
    assert where(both) == {"Observation": "invariant"}
    assert "obs-6" in errors(both)[0].message
    component_repeats_code = factories.observation(
        "p1", component=[{"code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}}]
    )
    assert where(component_repeats_code) == {"Observation": "invariant"}
    assert "obs-7" in errors(component_repeats_code)[0].message
    other_code = factories.observation(
        "p1", component=[{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}}]
    )
    assert errors(other_code) == []


def test_vs_2_under_vitalsigns() -> None:
    obs = factories.observation("p1", meta={"profile": [VITALSIGNS]})
    del obs["valueQuantity"]
    found = errors(obs)
    assert [i.code for i in found] == ["invariant"] and "vs-2" in found[0].message
    assert errors(obs, declared=False) == []  # vs-2 belongs to the profile, not to Observation


def test_a_reference_to_the_wrong_target_type() -> None:
    obs = factories.observation(subject={"reference": "Medication/m1"})
    assert where(obs) == {"Observation.subject.reference": "structure"}
    typed = factories.observation(subject={"type": "Medication", "identifier": {"value": "1"}})
    assert where(typed) == {"Observation.subject.type": "structure"}
    absolute = factories.observation(subject={"reference": "https://other.org/fhir/Patient/9/_history/2"})
    assert errors(absolute) == []


def test_heartrate_fixed_unit_code() -> None:
    obs = heart_rate()
    obs["valueQuantity"]["code"] = "bpm"
    found = errors(obs)
    assert [(i.code, i.expression) for i in found] == [("value", ("Observation.valueQuantity.code",))]
    assert HEARTRATE in found[0].message


def test_heartrate_slices_and_profile_cardinality() -> None:
    wrong_code = heart_rate()
    wrong_code["code"] = {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]}
    found = errors(wrong_code)  # slice HeartRateCode (LOINC 8867-4) missing
    assert [(i.code, i.expression) for i in found] == [("structure", ("Observation.code.coding",))]
    assert "HeartRateCode" in found[0].message
    no_category = heart_rate()
    del no_category["category"]
    assert where(no_category) == {"Observation.category": "required"}
    to_group = heart_rate(subject={"reference": "Group/g"})
    assert where(to_group) == {"Observation.subject.reference": "structure"}  # heartrate: Patient only
    assert errors(to_group, declared=False) == []


def test_an_unknown_element_and_an_extension_without_url() -> None:
    assert where(factories.patient(nickname="Annie")) == {"Patient.nickname": "structure"}
    pat = factories.patient(extension=[{"valueString": "x"}])
    assert where(pat) == {"Patient.extension[0].url": "required"}
    both = factories.patient(
        extension=[
            {"url": "http://e.org", "valueString": "x", "extension": [{"url": "a", "valueString": "y"}]}
        ]
    )
    assert where(both) == {"Patient.extension[0]": "invariant"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("birthDate", "1970-13-01"),
        ("birthDate", 1970),
        ("active", "true"),
        ("multipleBirthInteger", 2**31),
        ("multipleBirthInteger", 1.5),
        ("deceasedDateTime", "2020-01-01T10:00"),  # a time needs a zone
    ],
)
def test_primitive_formats_by_the_r4_regexes(field: str, value: Any) -> None:
    assert where(factories.patient(**{field: value})) == {f"Patient.{field}": "value"}


def test_choice_types_and_primitive_extensions() -> None:
    assert where(factories.patient(deceasedBoolean=False, deceasedDateTime="2020")) == {
        "Patient.deceasedDateTime": "structure"
    }
    assert where(factories.patient(deceasedString="x")) == {"Patient.deceasedString": "structure"}
    ext = {
        "extension": [
            {"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}
        ]
    }
    assert errors(factories.patient(_birthDate=ext)) == []
    assert where(factories.patient(_birthDate={"foo": 1})) == {"Patient._birthDate.foo": "structure"}


def test_contained_resources_and_bundle_entries_are_walked_with_their_paths() -> None:
    pat = factories.patient(
        contained=[{"resourceType": "Organization", "id": "o", "name": "O", "active": "yes"}],
        managingOrganization={"reference": "#o"},
    )
    assert where(pat) == {"Patient.contained[0].active": "value"}
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": factories.patient(gender="x")}],
    }
    assert where(bundle) == {"Bundle.entry[0].resource.gender": "code-invalid"}
    assert where(factories.patient(gender="x"), location="Bundle.entry[2].resource") == {
        "Bundle.entry[2].resource.gender": "code-invalid"
    }


def test_narrative_rules_are_part_of_the_validator() -> None:
    text = {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml"><script>x</script></div>',
    }
    assert where(factories.patient(text=text)) == {"Patient.text.div": "value"}


def test_unknown_profiles_follow_the_policy() -> None:
    pat = factories.patient(meta={"profile": ["http://example.org/StructureDefinition/unknown"]})
    assert errors(pat, unknown_profiles="ignore") == []
    assert errors(pat, unknown_profiles="warn") == []
    assert [i.severity for i in validator.issues(pat, unknown_profiles="warn", warnings=True)][
        -1
    ] == "warning"
    assert where(pat, unknown_profiles="error") == {"Patient.meta.profile": "not-supported"}


def test_a_profile_for_another_type_is_an_error() -> None:
    assert where(factories.patient(meta={"profile": [HEARTRATE]})) == {"Patient": "structure"}


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "status",
                    "code",
                    "valueQuantity",
                    "value",
                    "component",
                    "coding",
                    "system",
                    "extension",
                    "url",
                    "subject",
                    "reference",
                    "_status",
                    "id",
                    "text",
                    "div",
                    "effectivePeriod",
                    "start",
                    "end",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(
    changes=st.dictionaries(
        st.sampled_from(
            [
                "status",
                "code",
                "valueQuantity",
                "component",
                "subject",
                "contained",
                "text",
                "_status",
                "extension",
                "effectivePeriod",
                "meta",
            ]
        ),
        _json,
        max_size=3,
    )
)
def test_arbitrary_json_never_crashes_and_errors_name_a_place(changes: dict[str, Any]) -> None:
    obs = copy.deepcopy(heart_rate())
    obs.update(changes)
    for issue in validator.issues(obs, warnings=True):
        assert issue.severity in ("error", "warning")
        assert issue.code
        assert issue.expression and issue.expression[0].startswith("Observation")


@settings(max_examples=200, deadline=None)
@given(st.dates(), st.times(), st.sampled_from(["Z", "+01:00", "-05:30", "+14:00"]))
def test_every_well_formed_date_and_time_is_accepted(d: Any, t: Any, zone: str) -> None:
    stamp = f"{d.isoformat()}T{t.isoformat()}{zone}"
    if d.year == 0 or d.year < 1:
        return
    pat = factories.patient(birthDate=d.isoformat(), deceasedDateTime=stamp)
    assert errors(pat) == []


def _bp_component(code: str, value: float) -> dict[str, Any]:
    return {
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "valueQuantity": {
            "value": value,
            "unit": "mmHg",
            "system": "http://unitsofmeasure.org",
            "code": "mm[Hg]",
        },
    }


def test_blood_pressure_profile_slices_by_component_code() -> None:
    bp = factories.observation("p1", meta={"profile": ["http://hl7.org/fhir/StructureDefinition/bp"]})
    del bp["valueQuantity"]
    bp["code"] = {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]}
    bp["component"] = [_bp_component("8480-6", 120), _bp_component("8462-4", 80)]
    assert errors(bp) == []
    bp["component"] = [_bp_component("8462-4", 80)]
    found = errors(bp)
    assert [(i.code, i.expression) for i in found] == [("structure", ("Observation.component",))]
    assert "SystolicBP" in found[0].message


def test_a_coding_system_that_is_an_object_is_reported_not_a_crash() -> None:
    """Found by the oracle of test_valid_subtrees.py: the binding check hashed the system
    (TypeError: a 500 from `$validate`, which asks for warnings) on the old code."""
    enc = factories.encounter("p1")
    enc["class"]["system"] = {}
    found = {i.expression[0]: i.code for i in validator.issues(enc, warnings=True) if i.severity == "error"}
    assert found["Encounter.class.system"] == "value"


def test_a_contained_id_that_is_an_object_is_reported_not_a_crash() -> None:
    """Found by the same oracle: ref-1 put the contained ids in a set (TypeError on the old code)."""
    obs = factories.observation(
        "p1", contained=[{"resourceType": "Practitioner", "id": {}}], performer=[{"reference": "#p"}]
    )
    found = where(obs)
    assert found["Observation.contained[0].id"] == "value"
    assert found["Observation.performer[0]"] == "invariant"
