"""Paging links: next and previous walk the same pages in both directions, with keyset cursors.

https://hl7.org/fhir/R4/http.html#paging and https://hl7.org/fhir/R4/search.html#count.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests import factories


def _links(page: dict[str, Any]) -> dict[str, str]:
    return {link["relation"]: link["url"].replace("http://testserver", "") for link in page.get("link", [])}


def _ids(page: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in page.get("entry", [])]


@pytest.mark.parametrize("sort", ["", "&_sort=-birthdate,family", "&_sort=birthdate"])
def test_next_then_previous_walks_the_same_pages(client: TestClient, sort: str) -> None:
    for i in range(11):
        birth = f"19{50 + i % 4}-01-0{1 + i % 3}" if i % 5 else None
        body = factories.patient(f"F{i % 3}")
        if birth:
            body["birthDate"] = birth
        else:
            body.pop("birthDate")
        client.post("/Patient", json=body)
    url: str | None = f"/Patient?_count=3{sort}"
    forward: list[list[str]] = []
    pages: list[dict[str, Any]] = []
    while url:
        page = client.get(url).json()
        pages.append(page)
        forward.append(_ids(page))
        url = _links(page).get("next")
    assert [len(p) for p in forward] == [3, 3, 3, 2]
    assert len({i for p in forward for i in p}) == 11
    assert "previous" not in _links(pages[0])
    backward: list[list[str]] = []
    url = _links(pages[-1]).get("previous")
    while url:
        page = client.get(url).json()
        backward.append(_ids(page))
        url = _links(page).get("previous")
    assert backward == list(reversed(forward[:-1]))


def test_total_is_given_when_asked_and_when_free(client: TestClient) -> None:
    for i in range(4):
        client.post("/Patient", json=factories.patient(f"T{i}"))
    assert client.get("/Patient?_count=10").json()["total"] == 4
    assert "total" not in client.get("/Patient?_count=2").json()
    assert client.get("/Patient?_count=2&_total=accurate").json()["total"] == 4
    assert client.get("/Patient?_summary=count").json()["total"] == 4
    assert "entry" not in client.get("/Patient?_summary=count").json()


# Patients by family names: several names give several index rows per resource (the sort value is
# their min, or max when descending); "Smith" and "SMITH" are two rows with the same sort value;
# patients without a name sort last, in pk order.
_FAMILIES = [["Smith", "SMITH"], ["Adams", "Young"], [], ["Moore"], [], ["smith"], ["Brown", "Zeta"]]


@pytest.mark.parametrize(
    ("sort", "order"),
    [
        ("family", [1, 6, 3, 0, 5, 2, 4]),
        ("-family", [6, 1, 0, 5, 3, 2, 4]),
        ("-family,-_id", [6, 1, 5, 0, 3, 4, 2]),
    ],
)
@pytest.mark.parametrize("count", [1, 2, 3])
def test_sorted_pages_hold_each_match_once_in_both_directions(
    client: TestClient, sort: str, order: list[int], count: int
) -> None:
    for i, families in enumerate(_FAMILIES):
        body = factories.patient(**{"id": f"p{i}"})
        body["name"] = [{"family": f, "given": ["X"]} for f in families]
        if not families:
            body.pop("name")
        assert client.put(f"/Patient/p{i}", json=body).status_code == 201
    expected = [f"p{i}" for i in order]
    url: str | None = f"/Patient?_count={count}&_sort={sort}"
    forward: list[list[str]] = []
    pages: list[dict[str, Any]] = []
    while url:
        page = client.get(url).json()
        pages.append(page)
        forward.append(_ids(page))
        url = _links(page).get("next")
    assert [i for p in forward for i in p] == expected
    backward: list[list[str]] = []
    url = _links(pages[-1]).get("previous")
    while url:
        page = client.get(url).json()
        backward.append(_ids(page))
        url = _links(page).get("previous")
    assert backward == list(reversed(forward[:-1]))
