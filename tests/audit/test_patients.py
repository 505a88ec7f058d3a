"""audit/patients.py finds a resource's patients as the compartment parameters' index rows do (https://hl7.org/fhir/R4/compartmentdefinition-patient.html).

`of_resource` reads the compartment parameters' elements directly where their expression is a plain
path; the oracle is the general definition, the local `Patient/<id>` reference rows that
`search.index.param_tuples` gives each compartment parameter, over HL7's R4 examples (and the
resources of their Bundles and their contained resources), Synthea's resources (when
../shared/data is there) and Hypothesis-generated reference elements.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from fhir_server import spec_package
from fhir_server.audit import patients
from fhir_server.search.compartment import patient_compartment_params
from fhir_server.search.index import param_tuples
from fhir_server.store.sql import Store
from tests.conftest import synthea_files


def _by_param_tuples(resource: dict[str, Any]) -> set[str]:
    """The general definition (audit/patients.py before its per-type plans)."""
    res_type = resource.get("resourceType")
    if not isinstance(res_type, str):
        return set()
    if res_type == "Patient":
        rid = resource.get("id")
        return {rid} if isinstance(rid, str) else set()
    out: set[str] = set()
    for code in patient_compartment_params(res_type):
        for row in param_tuples(resource, code).get("reference", []):
            if row[2] == "Patient" and row[4] is None:
                out.add(str(row[3]))
    return out


def _with_inner(resource: Any) -> Iterator[dict[str, Any]]:
    """A resource, the resources of its Bundle entries and its contained resources."""
    if not isinstance(resource, dict):
        return
    yield resource
    for entry in resource.get("entry") or ():
        if isinstance(entry, dict):
            yield from _with_inner(entry.get("resource"))
    for inner in resource.get("contained") or ():
        yield from _with_inner(inner)


def _as_stored(bundle: dict[str, Any]) -> dict[str, Any]:
    """A Synthea transaction with its `urn:uuid:` references as the server stores them (`Type/id`)."""
    text = orjson.dumps(bundle).decode()
    for entry in bundle.get("entry", ()):
        url, resource = entry.get("fullUrl", ""), entry.get("resource", {})
        if url.startswith("urn:uuid:") and "resourceType" in resource:
            text = text.replace(f'"{url}"', f'"{resource["resourceType"]}/{url[9:]}"')
    result: dict[str, Any] = orjson.loads(text)
    return result


def test_every_hl7_example_has_the_patients_of_its_compartment_rows() -> None:
    checked = attached = 0
    for _path, resource in spec_package.resources():
        for one in _with_inner(resource):
            found = patients.of_resource(one)
            assert found == _by_param_tuples(one), one.get("resourceType")
            checked += 1
            attached += bool(found)
    assert checked > 3000 and attached > 500, (checked, attached)


def test_every_synthea_resource_has_the_patients_of_its_compartment_rows() -> None:
    files = synthea_files()
    if not files:
        pytest.skip("no Synthea sample data (../shared/data/synthea-r4)")
    checked = attached = 0
    for path in files[:30]:
        for one in _with_inner(_as_stored(orjson.loads(path.read_bytes()))):
            found = patients.of_resource(one)
            assert found == _by_param_tuples(one), one.get("resourceType")
            checked += 1
            attached += bool(found)
    assert attached > 1000, (checked, attached)


ids = st.text("abcXYZ019-.", min_size=1, max_size=8)
references = st.one_of(
    ids.map(lambda i: f"Patient/{i}"),
    ids.map(lambda i: f"Patient/{i}/_history/2"),
    ids.map(lambda i: f"Group/{i}"),
    ids.map(lambda i: f"http://example.org/fhir/Patient/{i}"),
    ids.map(lambda i: f"#{i}"),
    st.just("urn:uuid:6b3c5e2a-0000-4000-8000-000000000001"),
    st.just(""),
    st.text(max_size=12),
)
reference_elements = st.one_of(
    st.builds(lambda r: {"reference": r}, references),
    st.builds(lambda r, i: {"reference": r, "identifier": {"value": i}}, references, ids),
    st.builds(lambda i: {"identifier": {"system": "urn:x", "value": i}}, ids),
    st.builds(lambda i: {"resourceType": "Patient", "id": i}, ids),
    st.builds(lambda i, r: {"resourceType": "Patient", "id": i, "reference": r}, ids, references),
    st.builds(lambda r: {"display": r}, references),
    st.builds(lambda: {"reference": 7}),
    references,
    st.none(),
    st.integers(),
)
elements = reference_elements | st.lists(reference_elements, max_size=3)
types = st.sampled_from(
    [
        "Observation",
        "Encounter",
        "Condition",
        "AllergyIntolerance",
        "Claim",
        "Group",
        "CarePlan",
        "Account",
        "Provenance",
        "Communication",
        "DocumentReference",
        "Immunization",
        "Patient",
        "Basic",
        "Person",
    ]
)
keys = st.sampled_from(
    [
        "subject",
        "patient",
        "performer",
        "participant",
        "recorder",
        "asserter",
        "author",
        "sender",
        "recipient",
        "member",
        "agent",
        "beneficiary",
        "id",
        "requester",
        "informationSource",
    ]
)


@settings(max_examples=500, deadline=None)
@given(types, st.dictionaries(keys, elements, max_size=4))
def test_generated_references_give_the_patients_of_the_compartment_rows(
    res_type: str, elements: dict[str, Any]
) -> None:
    resource = {"resourceType": res_type, **elements}
    assert patients.of_resource(resource) == _by_param_tuples(resource)


def _txns(store: Store) -> dict[tuple[str, str, int], int]:
    with store.read() as tx:
        rows = tx.conn.execute(text("SELECT res_type, res_id, version, txn FROM resource_version"))
        return {(r[0], r[1], r[2]): r[3] for r in rows}


def test_the_index_rows_of_current_versions_give_the_patients_of_their_json(store: Store) -> None:
    """The audit trail reads a current version's patients from `idx_reference` instead of its JSON:
    the same sets over HL7's examples of every type in the Patient compartment, each stored as is."""
    examples = [
        r
        for _path, r in spec_package.resources()
        if r.get("resourceType") not in ("Patient", "Bundle", None)
        and patient_compartment_params(r["resourceType"])
    ]
    with store.write() as tx:
        tx.check_references = False
        for n, resource in enumerate(examples):
            tx.create(resource, f"ex{n}")
    txns = _txns(store)
    versions = [(txns[(r["resourceType"], f"ex{n}", 1)], r["resourceType"]) for n, r in enumerate(examples)]
    with store.read() as tx:
        found = patients.of_current_versions(tx.conn, versions)
    expected = {txn: patients.of_resource(r) for (txn, _), r in zip(versions, examples, strict=True)}
    assert found == expected
    assert len(examples) > 400 and sum(bool(p) for p in found.values()) > 300


def test_a_version_updated_or_deleted_since_is_left_to_its_json(store: Store) -> None:
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    with store.write() as tx:
        tx.check_references = False
        tx.create({**observation, "subject": {"reference": "Patient/a"}}, "moved")
        tx.create({**observation, "subject": {"reference": "Patient/a"}}, "gone")
        kept = tx.create({**observation, "subject": {"reference": "Patient/a"}}, "kept")
        nobody = tx.create(observation, "nobody")
    with store.write() as tx:
        tx.check_references = False
        moved_now, gone_now = tx.current("Observation", "moved"), tx.current("Observation", "gone")
        assert moved_now is not None and gone_now is not None
        tx.update(moved_now, {**observation, "id": "moved", "subject": {"reference": "Patient/b"}})
        tx.delete(gone_now)
    txns = _txns(store)
    asked = [(k, "Observation") for k in txns.values()]
    with store.read() as tx:
        found = patients.of_current_versions(tx.conn, asked)
    assert found == {
        txns[("Observation", "moved", 2)]: {"b"},
        txns[("Observation", "kept", 1)]: {"a"},
        txns[("Observation", "nobody", 1)]: set(),
    }
    assert (kept.res_id, nobody.res_id) == ("kept", "nobody")
