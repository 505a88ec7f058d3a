"""`_list`: the resources a List refers to, on both databases (https://hl7.org/fhir/R4/search.html#list)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.errors import Invalid
from fhir_server.search.types.list_param import ListValue, parse_list
from tests import factories


def _list(rid: str, *refs: str, subject: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "List",
        "id": rid,
        "status": "current",
        "mode": "working",
        "entry": [{"item": {"reference": ref}} for ref in refs],
    }
    if subject:
        out["subject"] = {"reference": subject}
    return out


def _put(client: TestClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        response = client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
        assert response.status_code in (200, 201), response.text


def _ids(client: TestClient, path: str, **params: str) -> list[str]:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return sorted(e["resource"]["id"] for e in response.json().get("entry", []))


@pytest.fixture
def world(client: TestClient) -> None:
    _put(
        client,
        {**factories.patient(), "id": "p1"},
        *({**factories.observation("p1", value=v), "id": f"o{v}"} for v in (1, 2, 3)),
        _list("l1", "Observation/o1", "Observation/o2", "Patient/p1"),
        _list("l2", "http://testserver/Observation/o3", "http://elsewhere.org/Observation/o1"),
    )
    assert client.delete("/Observation/o2").status_code in (200, 204)


def test_list_finds_the_current_resources_of_its_entries(client: TestClient, world: None) -> None:
    assert _ids(client, "/Observation", _list="l1") == ["o1"]  # o2 was deleted
    assert _ids(client, "/Patient", _list="l1") == ["p1"]
    assert _ids(client, "/Observation", _list="List/l2") == ["o3"]  # the absolute one under our base only
    assert _ids(client, "/Observation", _list="l1,l2") == ["o1", "o3"]
    assert _ids(client, "/Observation", _list="nope") == []


def test_list_combines_with_other_parameters(client: TestClient, world: None) -> None:
    assert _ids(client, "/Observation", _list="l1,l2", **{"value-quantity": "3"}) == ["o3"]
    both = client.get("/Observation?_list=l1&_list=l2").json()
    assert both.get("entry", []) == []
    _put(client, _list("l3", "Observation/o1"))
    anded = client.get("/Observation?_list=l1&_list=l3").json()
    assert [e["resource"]["id"] for e in anded["entry"]] == ["o1"]
    with_total = client.get("/Observation", params={"_list": "l1,l2", "_total": "accurate", "_count": "1"})
    assert with_total.json()["total"] == 2


def test_a_changed_list_changes_the_results(client: TestClient, world: None) -> None:
    _put(client, _list("l1", "Observation/o3"))
    assert _ids(client, "/Observation", _list="l1") == ["o3"]
    assert client.delete("/List/l1").status_code in (200, 204)
    assert _ids(client, "/Observation", _list="l1") == []


def test_list_values() -> None:
    assert parse_list("List/a-1", "_list") == ListValue("a-1")
    for bad in ("$current-allergies", "Patient/x", "", "a/b"):
        with pytest.raises(Invalid):
            parse_list(bad, "_list")


def test_functional_lists_and_sorting_are_400(client: TestClient) -> None:
    for params in ({"_list": "$current-problems"}, {"_sort": "_list"}, {"_list:missing": "true"}):
        assert client.get("/Observation", params=params).status_code == 400, params
