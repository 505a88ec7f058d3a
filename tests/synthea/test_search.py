"""Searches on the Synthea data give what a plain reading of the bundles says they should.

https://hl7.org/fhir/R4/search.html: token, date, sort, chains, _has, _include and _revinclude on
real-world-shaped data. The expectations are computed from the bundle files, not from the server.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson

from fhir_server.interactions.context import Context
from fhir_server.interactions.search import search
from fhir_server.settings import Settings
from fhir_server.store.sql import Store
from tests.conftest import BASE, synthea_files


def _loaded(synthea: tuple[Store, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every resource as sent, with urn:uuid references replaced by the server's Type/id.

    A urn:uuid is resolved within its own Bundle (several patient bundles carry their own copy of the
    same Practitioner under the same fullUrl).
    """
    _, responses = synthea
    out = []
    for path, response in zip(synthea_files(), responses, strict=True):
        entries = orjson.loads(path.read_bytes())["entry"]
        mapping = {
            entry["fullUrl"]: answer["response"]["location"].split("/_history")[0]
            for entry, answer in zip(entries, response["entry"], strict=True)
        }
        for entry in entries:
            text = orjson.dumps(entry["resource"]).decode()
            for urn in set(_urns(entry["resource"])):
                text = text.replace(f'"{urn}"', f'"{mapping[urn]}"')
            loaded = orjson.loads(text)
            loaded["id"] = mapping[entry["fullUrl"]].split("/")[1]
            out.append(loaded)
    return out


def _urns(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [u for v in node.values() for u in _urns(v)]
    if isinstance(node, list):
        return [u for v in node for u in _urns(v)]
    return [node] if isinstance(node, str) and node.startswith("urn:uuid:") else []


def _all_pages(store: Store, res_type: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
    ctx = Context(store=store, settings=Settings(base_url=BASE))
    entries: list[dict[str, Any]] = []
    while True:
        with store.read() as tx:
            page = orjson.loads(orjson.dumps(search(ctx, tx, res_type, params)))
        entries += page.get("entry", [])
        nxt = [link["url"] for link in page.get("link", []) if link["relation"] == "next"]
        if not nxt:
            return entries
        cursor = nxt[0].split("_cursor=")[1]
        params = [p for p in params if p[0] != "_cursor"] + [("_cursor", cursor)]


def test_patient_height_since_2015_sorted_newest_first(synthea: tuple[Store, list[dict[str, Any]]]) -> None:
    resources = _loaded(synthea)
    heights = [
        r
        for r in resources
        if r["resourceType"] == "Observation"
        and any(
            c.get("code") == "8302-2" and c.get("system") == "http://loinc.org" for c in r["code"]["coding"]
        )
    ]
    by_patient = Counter(r["subject"]["reference"] for r in heights)
    patient_ref = by_patient.most_common(1)[0][0]
    expected = sorted(
        (r for r in heights if r["subject"]["reference"] == patient_ref and r["effectiveDateTime"] >= "2015"),
        key=lambda r: r["effectiveDateTime"],
        reverse=True,
    )
    assert len(expected) >= 2
    params = [
        ("patient", patient_ref.split("/")[1]),
        ("code", "http://loinc.org|8302-2"),
        ("date", "ge2015"),
        ("_sort", "-date"),
        ("_count", "3"),
    ]
    got = _all_pages(synthea[0], "Observation", params)
    assert [e["resource"]["id"] for e in got] == [r["id"] for r in expected]
    dates = [e["resource"]["effectiveDateTime"] for e in got]
    assert dates == sorted(dates, reverse=True)


def test_encounters_by_patient_family_name_with_their_practitioners(
    synthea: tuple[Store, list[dict[str, Any]]],
) -> None:
    resources = _loaded(synthea)
    patients = {f"Patient/{r['id']}": r for r in resources if r["resourceType"] == "Patient"}
    family = next(iter(patients.values()))["name"][0]["family"]
    with_family = {ref for ref, p in patients.items() if any(n.get("family") == family for n in p["name"])}
    encounters = [
        r for r in resources if r["resourceType"] == "Encounter" and r["subject"]["reference"] in with_family
    ]
    practitioners = {
        p["individual"]["reference"]
        for e in encounters
        for p in e.get("participant", [])
        if p.get("individual", {}).get("reference", "").startswith("Practitioner/")
    }
    got = _all_pages(
        synthea[0],
        "Encounter",
        [("patient.name", family), ("_include", "Encounter:practitioner"), ("_count", "50")],
    )
    matches = {e["resource"]["id"] for e in got if e["search"]["mode"] == "match"}
    included = {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in got
        if e["search"]["mode"] == "include"
    }
    assert matches == {e["id"] for e in encounters}
    assert len(matches) > 0
    assert practitioners <= included  # every page includes the practitioners of its own encounters
    assert {i.split("/")[0] for i in included} == {"Practitioner"}


def test_patients_with_an_hba1c_and_their_goals(synthea: tuple[Store, list[dict[str, Any]]]) -> None:
    resources = _loaded(synthea)
    with_a1c = {
        r["subject"]["reference"]
        for r in resources
        if r["resourceType"] == "Observation" and any(c.get("code") == "4548-4" for c in r["code"]["coding"])
    }
    goals = {
        r["id"]
        for r in resources
        if r["resourceType"] == "Goal" and r.get("subject", {}).get("reference") in with_a1c
    }
    got = _all_pages(
        synthea[0],
        "Patient",
        [("_has:Observation:patient:code", "4548-4"), ("_revinclude", "Goal:patient"), ("_count", "100")],
    )
    assert {f"Patient/{e['resource']['id']}" for e in got if e["search"]["mode"] == "match"} == with_a1c
    assert {e["resource"]["id"] for e in got if e["search"]["mode"] == "include"} == goals
    assert len(with_a1c) > 0 and len(goals) > 0
