"""Patient/$everything (https://hl7.org/fhir/R4/patient-operation-everything.html): issue 12, acceptance 1.

A few Synthea bundles (../shared/data/synthea-r4: the organisations, the practitioners and the three
smallest patients) are POSTed as transactions; what each patient's $everything must return is
computed from the bundle files and the transaction responses: the entries of the patient's bundle
that reference the patient (the compartment, by the types of CompartmentDefinition-patient) plus
every resource they reference, each once, over all pages, and nothing of the other patients.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest
from fastapi.testclient import TestClient

from fhir_server.references import walk
from fhir_server.search.compartment import patient_compartment_params
from tests import factories
from tests.conftest import SYNTHEA_DIR

Key = tuple[str, str]


def _files() -> tuple[list[Path], list[Path]]:
    shared = sorted(SYNTHEA_DIR.glob("hospitalInformation*.json")) + sorted(
        SYNTHEA_DIR.glob("practitionerInformation*.json")
    )
    people = sorted(
        (f for f in SYNTHEA_DIR.glob("*.json") if f not in shared), key=lambda f: f.stat().st_size
    )[:3]
    return shared, people


def _post(client: TestClient, bundle: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/", json=bundle)
    assert response.status_code == 200, response.text[:500]
    return response.json()


def _located(bundle: dict[str, Any], response: dict[str, Any]) -> dict[str, Key]:
    """fullUrl -> (type, id) on the server, from the transaction response."""
    out: dict[str, Key] = {}
    for sent, done in zip(bundle["entry"], response["entry"], strict=True):
        rtype, rid = done["response"]["location"].split("/")[:2]
        out[sent["fullUrl"]] = (rtype, rid)
    return out


def _identified(bundle: dict[str, Any], located: dict[str, Key]) -> dict[str, Key]:
    """`Type?identifier=system|value` (Synthea's conditional references) -> (type, id)."""
    out: dict[str, Key] = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        for ident in resource.get("identifier", []):
            query = f"{resource['resourceType']}?identifier={ident.get('system', '')}|{ident['value']}"
            out[query] = located[entry["fullUrl"]]
    return out


@pytest.fixture
def loaded(client: TestClient) -> tuple[TestClient, dict[Key, set[Key]]]:
    """The client, and per Patient key what its $everything must return (computed from the files)."""
    shared, people = _files()
    if not people:
        pytest.skip(f"Synthea sample data not present at {SYNTHEA_DIR}")
    resolve: dict[str, Key] = {}
    for path in shared:
        bundle = orjson.loads(path.read_bytes())
        located = _located(bundle, _post(client, bundle))
        resolve |= located | _identified(bundle, located)
    expected: dict[Key, set[Key]] = {}
    for path in people:
        bundle = orjson.loads(path.read_bytes())
        located = _located(bundle, _post(client, bundle))
        names = resolve | located
        patient_url = next(
            e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
        )
        members: set[Key] = {located[patient_url]}
        references: set[Key] = set()
        for entry in bundle["entry"]:
            resource = entry["resource"]
            refs = {el["reference"] for el, _ in walk(resource, "", contained=True)}
            if patient_url in refs and patient_compartment_params(resource["resourceType"]):
                members.add(located[entry["fullUrl"]])
                references |= {names[r] for r in refs if not r.startswith("#")}
        expected[located[patient_url]] = members | references
    return client, expected


def _all_pages(client: TestClient, url: str, **params: Any) -> list[Key]:
    """Every entry of every page, following `next` links."""
    out: list[Key] = []
    response = client.get(url, params=params)
    while True:
        assert response.status_code == 200, response.text[:500]
        page = response.json()
        assert page["type"] == "searchset"
        out += [(e["resource"]["resourceType"], e["resource"]["id"]) for e in page.get("entry", [])]
        after = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not after:
            return out
        parts = urlsplit(after[0])
        response = client.get(parts.path, params=parse_qsl(parts.query))


def test_every_page_together_is_the_compartment_and_its_references_once(
    loaded: tuple[TestClient, dict[Key, set[Key]]],
) -> None:
    client, expected = loaded
    for (_, pid), want in expected.items():
        got = _all_pages(client, f"/Patient/{pid}/$everything", _count=37)
        assert [k for k, n in Counter(got).items() if n > 1] == []
        assert set(got) == want
        others = set().union(*(v for k, v in expected.items() if k[1] != pid))
        mine_only = {
            k for k in others if k[0] not in ("Practitioner", "Organization", "Location", "Medication")
        }
        assert not set(got) & mine_only - want


def test_type_filter_applies_to_members_and_references(
    loaded: tuple[TestClient, dict[Key, set[Key]]],
) -> None:
    client, expected = loaded
    (_, pid), want = next(iter(expected.items()))
    got = _all_pages(client, f"/Patient/{pid}/$everything", _type="Encounter,Practitioner", _count=50)
    assert sorted(got) == sorted(k for k in want if k[0] in ("Encounter", "Practitioner"))
    assert {k[0] for k in got} == {"Encounter", "Practitioner"}


def test_since_returns_only_what_changed(loaded: tuple[TestClient, dict[Key, set[Key]]]) -> None:
    client, expected = loaded
    (_, pid), want = next(iter(expected.items()))
    assert set(_all_pages(client, f"/Patient/{pid}/$everything", _since="2000-01-01")) == want
    time.sleep(0.01)
    since = client.get("/metadata").json()["date"]  # a day: everything loaded today is at or after it
    assert set(_all_pages(client, f"/Patient/{pid}/$everything", _since=since)) == want
    cut = client.get(f"/Patient/{pid}").json()["meta"]["lastUpdated"]
    changed = next(k for k in sorted(want) if k[0] == "Observation")
    body = client.get(f"/Observation/{changed[1]}").json()
    time.sleep(0.01)
    assert client.put(f"/Observation/{changed[1]}", json=body | {"status": "amended"}).status_code == 200
    later = client.get(f"/Observation/{changed[1]}").json()["meta"]["lastUpdated"]
    assert later > cut
    assert _all_pages(client, f"/Patient/{pid}/$everything", _since=later) == [changed]


def _ids(client: TestClient, url: str, **params: Any) -> set[Key]:
    return set(_all_pages(client, url, **params))


def test_start_and_end_select_care_in_the_range(client: TestClient) -> None:
    pid = client.post("/Patient", json=factories.patient()).json()["id"]
    other = client.post("/Patient", json=factories.patient("Other")).json()["id"]
    doc = client.post("/Practitioner", json={"resourceType": "Practitioner"}).json()["id"]
    late_doc = client.post("/Practitioner", json={"resourceType": "Practitioner"}).json()["id"]
    coverage = {  # in the compartment, with no care date
        "resourceType": "Coverage",
        "status": "active",
        "beneficiary": {"reference": f"Patient/{pid}"},
        "payor": [{"reference": f"Patient/{pid}"}],
    }
    covered = client.post("/Coverage", json=coverage).json()["id"]
    made = {}
    for day, who in (("2020-01-10", doc), ("2020-02-10", doc), ("2020-03-10", late_doc)):
        obs = factories.observation(
            pid, effectiveDateTime=f"{day}T10:00:00Z", performer=[{"reference": f"Practitioner/{who}"}]
        )
        made[day] = client.post("/Observation", json=obs).json()["id"]
    client.post("/Observation", json=factories.observation(other))
    url = f"/Patient/{pid}/$everything"
    base = {("Patient", pid), ("Coverage", covered)}
    assert _ids(client, url, start="2020-02-01", end="2020-02-28") == base | {
        ("Observation", made["2020-02-10"]),
        ("Practitioner", doc),
    }
    assert _ids(client, url, start="2020-03") == base | {
        ("Observation", made["2020-03-10"]),
        ("Practitioner", late_doc),
    }
    assert _ids(client, url, end="2020-01") == base | {
        ("Observation", made["2020-01-10"]),
        ("Practitioner", doc),
    }
    assert len(_ids(client, url)) == 7


def test_type_level_covers_every_patient_and_pages_once(client: TestClient) -> None:
    pids = [client.post("/Patient", json=factories.patient(str(n))).json()["id"] for n in range(3)]
    for pid in pids:
        for value in (60, 70):
            client.post("/Observation", json=factories.observation(pid, value=value))
    got = _all_pages(client, "/Patient/$everything", _count=2)
    assert len(got) == len(set(got)) == 9
    assert {k[1] for k in got if k[0] == "Patient"} == set(pids)


def test_post_with_parameters_and_bad_inputs(client: TestClient) -> None:
    pid = client.post("/Patient", json=factories.patient()).json()["id"]
    body = {"resourceType": "Parameters", "parameter": [{"name": "_type", "valueString": "Patient"}]}
    response = client.post(f"/Patient/{pid}/$everything", json=body)
    assert response.status_code == 200
    assert [e["resource"]["id"] for e in response.json()["entry"]] == [pid]
    assert response.json()["total"] == 1
    assert client.get("/Patient/nope/$everything").status_code == 404
    for bad in ({"_type": "Nonsense"}, {"start": "2020-13"}, {"_count": "x"}, {"_cursor": "forged.tag"}):
        response = client.get(f"/Patient/{pid}/$everything", params=bad)
        assert response.status_code == 400, bad
        assert response.json()["resourceType"] == "OperationOutcome"
    assert (
        client.get(f"/Patient/{pid}/$everything", params={"start": "2021", "end": "2020"}).status_code == 400
    )
