"""Index rows of HL7's R4 examples (https://hl7.org/fhir/R4/search.html), checked by hand against docs/index-rows.md."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_server import spec_package
from fhir_server.search import parameters
from fhir_server.search.index import COLUMNS, index_rows
from fhir_server.search.parameters import param_id
from fhir_server.search.types.date import MAX
from fhir_server.store.tables import INDEX_TABLES

pytestmark = pytest.mark.rolled_back

OBSERVATION_KEYS = [
    "code",
    "subject",
    "valueQuantity",
    "effectivePeriod",
    "component",
    "identifier",
    "meta",
    "performer",
]
US = 1_000_000
DAY = 86_400 * US


def example(name: str) -> dict[str, Any]:
    return dict(spec_package.resources(name))[spec_package.ensure() / f"{name}.json"]


def rows(resource: dict[str, Any], kind: str, code: str) -> list[dict[str, Any]]:
    """The rows of one parameter (or pseudo-parameter code) in one table, without param_id."""
    pid = param_id(resource["resourceType"], code)
    return [
        {k: v for k, v in r.items() if k != "param_id"}
        for r in index_rows(resource).get(kind, [])
        if r["param_id"] == pid
    ]


def values(resource: dict[str, Any], kind: str, code: str, column: str) -> list[Any]:
    return [r[column] for r in rows(resource, kind, code)]


# ---------------------------------------------------------------- Patient


def test_patient_family_name_is_normalised_and_kept_exact() -> None:
    patient = example("Patient-example")
    assert {"norm": "chalmers", "exact": "Chalmers", "grp": 0} in rows(patient, "string", "family")
    assert sorted(values(patient, "string", "family", "norm")) == ["chalmers", "windsor"]


def test_patient_name_indexes_every_given_and_family() -> None:
    assert sorted(values(example("Patient-example"), "string", "name", "norm")) == [
        "chalmers",
        "james",
        "jim",
        "peter",
        "windsor",
    ]


def test_patient_birthdate_is_the_whole_day() -> None:
    low = 157_161_600 * US  # 1974-12-25T00:00:00Z
    assert rows(example("Patient-example"), "date", "birthdate") == [
        {"grp": 0, "low": low, "high": low + DAY - 1}
    ]


def test_patient_phone_is_a_contact_point_token_without_system() -> None:
    phones = rows(example("Patient-example"), "token", "phone")
    assert {"grp": 0, "system": None, "code": "(03) 5555 6473", "display": None} in phones
    assert len(phones) == 3


def test_patient_identifier_and_its_of_type_row() -> None:
    patient = example("Patient-example")
    assert rows(patient, "token", "identifier") == [
        {"grp": 0, "system": "urn:oid:1.2.36.146.595.217.0.1", "code": "12345", "display": None}
    ]
    assert rows(patient, "token", "identifier:of-type") == [
        {
            "grp": 0,
            "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
            "code": "MR",
            "display": "12345",
        }
    ]


def test_patient_deceased_false_and_gender_are_tokens() -> None:
    patient = example("Patient-example")
    assert values(patient, "token", "deceased", "code") == ["false"]
    assert values(patient, "token", "gender", "code") == ["male"]


def test_patient_address_city_and_organization_reference() -> None:
    patient = example("Patient-example")
    assert values(patient, "string", "address-city", "norm") == ["pleasantville"]
    assert rows(patient, "reference", "organization") == [
        {"grp": 0, "target_type": "Organization", "target_id": "1", "url": None}
    ]


# ---------------------------------------------------------------- Observation


def test_observation_code_tokens_carry_lower_cased_display() -> None:
    codes = rows(example("Observation-example"), "token", "code")
    assert {"grp": 0, "system": "http://loinc.org", "code": "29463-7", "display": "body weight"} in codes
    assert len(codes) == 4


def test_observation_subject_and_patient_references() -> None:
    observation = example("Observation-example")
    expected = [{"grp": 0, "target_type": "Patient", "target_id": "example", "url": None}]
    assert rows(observation, "reference", "subject") == expected
    assert rows(observation, "reference", "patient") == expected


def test_observation_value_quantity_in_pounds_has_gram_canon() -> None:
    (row,) = rows(example("Observation-example"), "quantity", "value-quantity")
    assert row["value"] == 185.0 and row["code"] == "[lb_av]" and row["unit"] == "lbs"
    assert row["canon_code"] == "g"
    assert row["canon_value"] == pytest.approx(185 * 453.59237)


def test_observation_date_is_the_effective_day() -> None:
    low = 1_459_123_200 * US  # 2016-03-28T00:00:00Z
    assert rows(example("Observation-example"), "date", "date") == [
        {"grp": 0, "low": low, "high": low + DAY - 1}
    ]


def test_blood_pressure_component_composite_pairs_code_and_value_by_grp() -> None:
    bp = example("Observation-blood-pressure")
    tokens = rows(bp, "token", "component-code-value-quantity")
    quantities = rows(bp, "quantity", "component-code-value-quantity")
    by_grp = {q["grp"]: q["value"] for q in quantities}
    systolic = next(t["grp"] for t in tokens if t["code"] == "8480-6")
    diastolic = next(t["grp"] for t in tokens if t["code"] == "8462-4")
    assert (systolic, diastolic) == (1, 2)
    assert by_grp == {1: 107.0, 2: 60.0}
    assert {q["canon_code"] for q in quantities} == {"g.m-1.s-2"}


def test_blood_pressure_combo_composite_has_no_rows_of_its_own_its_parts_answer_it() -> None:
    bp = example("Observation-blood-pressure")
    assert parameters.get("Observation", "combo-code-value-quantity").parts == (  # type: ignore[union-attr]
        "code-value-quantity",
        "component-code-value-quantity",
    )
    for kind in ("token", "quantity"):
        assert rows(bp, kind, "combo-code-value-quantity") == []
        # the part on the Observation itself has no rows either (`code` and `value-quantity` answer
        # it); the components are numbered 1, 2
        assert rows(bp, kind, "code-value-quantity") == []
        assert {r["grp"] for r in rows(bp, kind, "component-code-value-quantity")} == {1, 2}


def test_combo_code_rows_are_those_of_code_and_component_code() -> None:
    bp = example("Observation-blood-pressure")
    assert rows(bp, "token", "combo-code") == []
    codes = {r["code"] for code in ("code", "component-code") for r in rows(bp, "token", code)}
    assert {"85354-9", "8480-6", "8462-4"} <= codes


def test_codeable_concept_text_gets_a_row_only_when_no_coding_has_it_as_display() -> None:
    concept = {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body Weight"}]}
    same = {"resourceType": "Observation", "status": "final", "code": {**concept, "text": "body weight"}}
    other = {"resourceType": "Observation", "status": "final", "code": {**concept, "text": "Weight"}}
    coding_row = {"grp": 0, "system": "http://loinc.org", "code": "29463-7", "display": "body weight"}
    assert rows(same, "token", "code") == [coding_row]
    assert rows(other, "token", "code") == [
        coding_row,
        {"grp": 0, "system": None, "code": None, "display": "weight"},
    ]


def test_component_value_quantity_indexes_every_component() -> None:
    assert sorted(
        values(example("Observation-blood-pressure"), "quantity", "component-value-quantity", "value")
    ) == [
        60.0,
        107.0,
    ]


def test_observation_code_value_quantity_has_no_rows_its_components_parameters_answer_it() -> None:
    observation = example("Observation-example")
    assert parameters.get("Observation", "code-value-quantity").joined == ("code", "value-quantity")  # type: ignore[union-attr]
    for kind in ("token", "quantity"):
        assert rows(observation, kind, "code-value-quantity") == []
    assert {t["code"] for t in rows(observation, "token", "code")} == {
        "29463-7",
        "3141-9",
        "27113001",
        "body-weight",
    }
    assert values(observation, "quantity", "value-quantity", "value") == [185.0]


JOINED = sorted(
    (sp.resource_type, sp.code)
    for t in parameters.resource_types()
    for sp in parameters.for_type(t).values()
    if sp.joined
)


@pytest.mark.parametrize(("resource_type", "code"), JOINED)
def test_a_joined_composite_s_component_rows_are_its_component_parameters_rows(
    resource_type: str, code: str
) -> None:
    """What each component of the composite gives on the resource itself (its expression and its
    type's values(), as a composite with rows of its own writes them) is, row for row, what the
    component's parameter writes: searching those rows instead finds the same resources. Over
    every HL7 example of the type."""
    from collections import defaultdict

    from fhir_server.search.index import VALUES
    from fhir_server.search.types import composite

    sp = parameters.get(resource_type, code)
    assert sp is not None and sp.expression == resource_type
    checked = 0
    for _, resource in spec_package.resources(f"{resource_type}-"):
        if resource.get("resourceType") != resource_type:
            continue
        own = index_rows(resource)
        for c in sp.components:
            plan = composite.ComponentPlan(c.expression, resource_type, VALUES[c.type], c.type)
            sink: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
            for found, fhir_type in plan.extractor(resource_type).typed_on(resource, resource):
                plan.values(found, fhir_type, sp.param_id, 1, sink, None)
            mine = sorted((r[2:] for r in sink[c.type]), key=repr)
            pid = param_id(resource_type, c.code)
            theirs = sorted(
                (
                    tuple(r[k] for k in COLUMNS[c.type][2:])
                    for r in own.get(c.type, [])
                    if r["param_id"] == pid
                ),
                key=repr,
            )
            assert mine == theirs, (resource.get("id"), c.code)
            checked += bool(mine)
    assert checked


# ---------------------------------------------------------------- other resources


def test_encounter_class_status_and_subject() -> None:
    encounter = example("Encounter-example")
    assert rows(encounter, "token", "class") == [
        {
            "grp": 0,
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "IMP",
            "display": "inpatient encounter",
        }
    ]
    assert values(encounter, "token", "status", "code") == ["in-progress"]
    assert values(encounter, "reference", "patient", "target_id") == ["example"]


def test_medication_statement_contained_reference_is_not_indexed() -> None:
    statement = example("MedicationStatement-example001")
    assert rows(statement, "reference", "medication") == []
    assert rows(statement, "reference", "subject") == [
        {"grp": 0, "target_type": "Patient", "target_id": "pat1", "url": None}
    ]


def test_medication_statement_code_and_effective_date() -> None:
    statement = example("MedicationStatement-example002")
    assert rows(statement, "token", "code") == []  # medicationReference: the code is on the Medication
    low = 1_422_057_600 * US  # 2015-01-24
    effective = example("MedicationStatement-example001")
    assert rows(effective, "date", "effective") == [{"grp": 0, "low": low - DAY, "high": low - 1}]


def test_document_reference_date_with_offset_is_utc_to_the_second() -> None:
    document = example("DocumentReference-example")
    low = 1_135_377_821 * US  # 2005-12-24T09:43:41+11:00 = 2005-12-23T22:43:41Z
    assert rows(document, "date", "date") == [{"grp": 0, "low": low, "high": low + US - 1}]


def test_document_reference_relatesto_composite_and_type() -> None:
    document = example("DocumentReference-example")
    assert rows(document, "token", "relation") == [
        {"grp": 0, "system": None, "code": "appends", "display": None}
    ]
    assert rows(document, "reference", "relatesto") == [
        {"grp": 0, "target_type": "DocumentReference", "target_id": "example", "url": None}
    ]
    assert values(document, "token", "type", "code") == ["34108-1"]
    assert values(document, "token", "relationship", "code") == ["appends"]
    assert values(document, "reference", "relationship", "target_id") == ["example"]
    assert {r["grp"] for r in rows(document, "reference", "relationship")} == {1}


def test_goal_start_date_target_date_and_lifecycle() -> None:
    goal = example("Goal-example")
    assert values(goal, "token", "lifecycle-status", "code") == ["on-hold"]
    start = 1_428_192_000 * US  # 2015-04-05
    assert rows(goal, "date", "start-date") == [{"grp": 0, "low": start, "high": start + DAY - 1}]
    due = 1_459_814_400 * US  # 2016-04-05
    assert rows(goal, "date", "target-date") == [{"grp": 0, "low": due, "high": due + DAY - 1}]


def test_period_without_end_is_open_ended() -> None:
    encounter = {"resourceType": "Encounter", "period": {"start": "2020-01-01T10:00:00Z"}}
    low = 1_577_872_800 * US
    assert rows(encounter, "date", "date") == [{"grp": 0, "low": low, "high": MAX}]


# ---------------------------------------------------------------- contract


def test_meta_tag_profile_security_and_source_are_indexed() -> None:
    resource = {
        "resourceType": "Basic",
        "id": "b",
        "meta": {
            "lastUpdated": "2020-01-01T00:00:00Z",
            "tag": [{"system": "s", "code": "t"}],
            "security": [{"code": "R"}],
            "profile": ["http://p"],
            "source": "http://src#1",
        },
    }
    assert values(resource, "token", "_tag", "code") == ["t"]
    assert values(resource, "token", "_security", "code") == ["R"]
    assert values(resource, "uri", "_profile", "uri") == ["http://p"]
    assert values(resource, "uri", "_source", "uri") == ["http://src#1"]
    assert rows(resource, "token", "_id") == [] and rows(resource, "date", "_lastUpdated") == []


def test_identical_rows_are_written_once() -> None:
    patient = {"resourceType": "Patient", "name": [{"family": "Ng"}, {"family": "Ng"}]}
    assert rows(patient, "string", "family") == [{"grp": 0, "norm": "ng", "exact": "Ng"}]


def test_unknown_resource_type_has_no_rows() -> None:
    assert index_rows({"resourceType": "NotAType", "id": "x"}) == {}
    assert index_rows({"id": "x"}) == {}


def test_row_dicts_have_exactly_the_table_columns_but_resource_pk() -> None:
    for kind, table in INDEX_TABLES.items():
        keys = {c.name for c in table.primary_key}  # a row key (idx_text.id) is the database's
        assert set(COLUMNS[kind]) == {c.name for c in table.columns} - {"resource_pk"} - keys
    for kind, kind_rows in index_rows(example("Observation-blood-pressure")).items():
        assert kind in INDEX_TABLES
        for row in kind_rows:
            assert tuple(row) == COLUMNS[kind]


def test_every_hl7_example_indexes_into_rows_that_fit_the_tables() -> None:
    known = set(parameters.resource_types())
    checked = 0
    for _path, resource in spec_package.resources():
        if resource.get("resourceType") not in known:
            continue
        for kind, kind_rows in index_rows(resource).items():
            table = INDEX_TABLES[kind]
            for row in kind_rows:
                for name, value in row.items():
                    column = table.c[name]
                    if value is None:
                        assert column.nullable, (kind, name)
                    elif isinstance(value, str):
                        length = column.type.length  # type: ignore[attr-defined]
                        assert value and (length is None or len(value) <= length), (kind, name, value)
        checked += 1
    assert checked > 2_000


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["reference", "coding", "value", "system", "code", "start", "text"]),
            children,
            max_size=3,
        )
    ),
    max_leaves=8,
)


MALFORMED_KEYS = {
    "Observation": OBSERVATION_KEYS,
    "Patient": [
        "name",
        "telecom",
        "birthDate",
        "address",
        "identifier",
        "deceasedBoolean",
        "link",
        "generalPractitioner",
    ],
    "Encounter": ["period", "class", "subject", "participant", "location", "length", "reasonCode"],
}


@settings(max_examples=300)
@given(
    st.sampled_from(sorted(MALFORMED_KEYS)).flatmap(
        lambda t: st.tuples(
            st.just(t), st.dictionaries(st.sampled_from(MALFORMED_KEYS[t]), json_values, max_size=6)
        )
    )
)
def test_malformed_resources_never_raise(case: tuple[str, dict[str, Any]]) -> None:
    resource_type, fields = case
    resource = {"resourceType": resource_type, **fields}
    for kind, kind_rows in index_rows(resource).items():
        assert all(tuple(row) == COLUMNS[kind] for row in kind_rows)


@pytest.mark.parametrize("code", ["identifier", "_tag", "code", "status"])
def test_param_tuples_are_the_index_rows_of_that_parameter_alone(code: str) -> None:
    from fhir_server.search.index import index_tuples, param_tuples
    from fhir_server.search.parameters import param_id
    from tests import factories

    resources = [
        factories.observation(
            "p1",
            identifier=[{"system": "urn:a", "value": "1"}, {"value": "2", "type": {"text": "T"}}],
            meta={"tag": [{"system": "urn:t", "code": "x"}]},
        ),
        factories.patient(identifier=[{"system": "urn:mrn", "value": "9"}]),
        factories.observation("p2"),
    ]
    for resource in resources:
        pid = param_id(resource["resourceType"], code)
        expected = {
            kind: [row for row in rows if row[0] == pid] for kind, rows in index_tuples(resource).items()
        }
        expected = {kind: rows for kind, rows in expected.items() if rows}
        assert param_tuples(resource, code) == expected
