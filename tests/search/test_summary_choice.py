"""`_elements` names choice elements without their type (issue 11): `_elements=value` keeps
`valueQuantity`, `_elements=effective` keeps `effectiveDateTime` or `effectivePeriod`, on read and
search, both databases. Fails on 77b7c15 (the choice elements were dropped)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from fhir_server.search.summary import subset
from fhir_server.store.sql import Store
from tests import factories


def test_subset_keeps_the_chosen_type_of_a_choice_element() -> None:
    obs = factories.observation("p1")
    assert subset(obs, None, ["value"])["valueQuantity"] == obs["valueQuantity"]
    assert "effectiveDateTime" in subset(obs, None, ["effective"])
    period = {
        **{k: v for k, v in obs.items() if k != "effectiveDateTime"},
        "effectivePeriod": {"start": "2020"},
    }
    kept = subset(period, None, ["effective"])
    assert kept["effectivePeriod"] == {"start": "2020"} and "valueQuantity" not in kept
    ext = {"extension": [{"url": "http://e.org", "valueString": "x"}]}
    assert subset({**factories.patient(), "_birthDate": ext}, None, ["birthDate"])["_birthDate"] == ext


def test_elements_on_read_and_search(client: TestClient, store: Store) -> None:
    with store.write() as tx:
        tx.create(factories.patient(), "p1")
        tx.create(factories.observation("p1"), "o1")
    read = client.get("/Observation/o1", params={"_elements": "value,effective"}).json()
    assert "valueQuantity" in read and "effectiveDateTime" in read and "category" not in read
    found = client.get("/Observation", params={"_elements": "value"}).json()["entry"][0]["resource"]
    assert "valueQuantity" in found and "effectiveDateTime" not in found
