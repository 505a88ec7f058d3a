"""`_text` and `_content` through the REST API, on both databases (https://hl7.org/fhir/R4/search.html#text).

Every write path keeps the text index right: create, update, delete, transaction Bundles, the
$import writer (store/bulk_write.py) and the reindex of resources stored before the index existed.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import delete, select

from fhir_server.store import bulk_write, tables
from fhir_server.store.reindex import reindex
from fhir_server.store.sql import Store
from tests import factories


def _div(text: str) -> dict[str, str]:
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{text}</div>'}


def _note(rid: str, narrative: str, **extra: Any) -> dict[str, Any]:
    return {**factories.observation("p1"), "id": rid, "text": _div(narrative), **extra}


def _ids(client: TestClient, path: str, **params: str) -> list[str]:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return [e["resource"]["id"] for e in response.json().get("entry", [])]


def _put(client: TestClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        response = client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
        assert response.status_code in (200, 201), response.text


def _world(client: TestClient) -> None:
    _put(
        client,
        {**factories.patient("Fièvre", "Ann"), "id": "p1"},
        _note("o1", "Patient reports <b>Fever</b> and chills since Monday"),
        _note("o2", "No fever. Heart rate &amp; rhythm regular."),
        _note("o3", "Shortness of breath; chills at night", note=[{"text": "Hypertension follow-up"}]),
        {**factories.observation("p1"), "id": "o4"},  # no narrative
    )


def test_text_searches_the_narrative_words_anded(client: TestClient) -> None:
    _world(client)
    assert sorted(_ids(client, "/Observation", _text="fever")) == ["o1", "o2"]
    assert _ids(client, "/Observation", _text="FEVER chills") == ["o1"]
    assert sorted(_ids(client, "/Observation", _text="chills")) == ["o1", "o3"]
    assert _ids(client, "/Observation", _text="rhythm") == ["o2"]  # &amp; decoded, tags removed
    assert _ids(client, "/Observation", _text="hypertension") == []  # a note, not the narrative
    assert _ids(client, "/Observation", _content="hypertension") == ["o3"]


def test_or_phrases_prefixes_and_comma_values(client: TestClient) -> None:
    _world(client)
    assert sorted(_ids(client, "/Observation", _text="monday OR night")) == ["o1", "o3"]
    assert _ids(client, "/Observation", _text='"heart rate"') == ["o2"]
    assert _ids(client, "/Observation", _text='"rate heart"') == []
    assert _ids(client, "/Observation", _text="heart-rate") == ["o2"]  # splits into a phrase
    assert sorted(_ids(client, "/Observation", _text="chil*")) == ["o1", "o3"]
    assert sorted(_ids(client, "/Observation", _text="monday,breath")) == ["o1", "o3"]
    both = client.get("/Observation?_text=chills&_text=night").json()
    assert [e["resource"]["id"] for e in both["entry"]] == ["o3"]


def test_accents_and_case_fold_on_both_sides(client: TestClient) -> None:
    _world(client)
    assert _ids(client, "/Patient", _content="fievre") == ["p1"]
    assert _ids(client, "/Patient", _content="FIÈVRE") == ["p1"]


def test_content_includes_codes_numbers_and_the_narrative(client: TestClient) -> None:
    _world(client)
    assert sorted(_ids(client, "/Observation", _content="8867")) == ["o1", "o2", "o3", "o4"]
    assert _ids(client, "/Observation", _content="breath 72") == ["o3"]


def test_combines_with_other_parameters_sort_paging_include_and_total(client: TestClient) -> None:
    _world(client)
    assert sorted(_ids(client, "/Observation", _text="chills", subject="Patient/p1")) == ["o1", "o3"]
    assert _ids(client, "/Observation", _text="chills", subject="Patient/nobody") == []
    assert _ids(client, "/Observation", _text="chills", _sort="-_id") == ["o3", "o1"]
    page = client.get("/Observation", params={"_text": "chills", "_count": "1", "_sort": "_id"}).json()
    assert [e["resource"]["id"] for e in page["entry"]] == ["o1"]
    nxt = next(link["url"] for link in page["link"] if link["relation"] == "next")
    second = client.get(nxt).json()
    assert [e["resource"]["id"] for e in second["entry"]] == ["o3"]
    counted = client.get("/Observation", params={"_text": "chills", "_total": "accurate", "_count": "1"})
    assert counted.json()["total"] == 2
    included = client.get(
        "/Observation", params={"_text": "rhythm", "_include": "Observation:subject"}
    ).json()
    assert sorted(e["resource"]["id"] for e in included["entry"]) == ["o2", "p1"]
    assert _ids(client, "/Observation", **{"_text:missing": "true"}) == ["o4"]


def test_system_search_across_types(client: TestClient) -> None:
    _world(client)
    response = client.get("/", params={"_content": "fievre OR hypertension", "_type": "Patient,Observation"})
    assert response.status_code == 200
    assert sorted(e["resource"]["id"] for e in response.json()["entry"]) == ["o3", "p1"]


def test_a_value_without_words_or_sorting_on_text_is_a_400(client: TestClient) -> None:
    for params in ({"_text": '"" ***'}, {"_text": "OR"}, {"_sort": "_text"}, {"_text:exact": "x"}):
        response = client.get("/Observation", params=params)
        assert response.status_code == 400, params
        assert response.json()["resourceType"] == "OperationOutcome"


def test_updates_and_deletes_keep_the_index_right(client: TestClient) -> None:
    _world(client)
    _put(client, _note("o1", "Now only a cough"))
    assert _ids(client, "/Observation", _text="monday") == []
    assert _ids(client, "/Observation", _text="cough") == ["o1"]
    assert client.delete("/Observation/o3").status_code in (200, 204)
    assert _ids(client, "/Observation", _text="chills") == []
    assert _ids(client, "/Observation", _content="hypertension") == []
    _put(client, _note("o3", "Chills are back"))  # re-created after the delete
    assert _ids(client, "/Observation", _text="chills") == ["o3"]


def test_transaction_bundles_are_indexed(client: TestClient) -> None:
    bundle = factories.transaction(
        *(
            factories.post_entry({**factories.observation(), "text": _div(f"entry number{i}")})
            for i in range(3)
        )
    )
    assert client.post("/", json=bundle).status_code == 200
    assert len(_ids(client, "/Observation", _text="entry")) == 3
    assert len(_ids(client, "/Observation", _text="number1")) == 1


def test_the_import_writer_indexes_creates_and_updates(client: TestClient, store: Store) -> None:
    bulk_write.write(store, [_note("i1", "imported alpha"), {**factories.patient(), "id": "p1"}])
    assert _ids(client, "/Observation", _text="alpha") == ["i1"]
    bulk_write.write(store, [_note("i1", "imported beta")])
    assert _ids(client, "/Observation", _text="alpha") == []
    assert _ids(client, "/Observation", _text="beta") == ["i1"]


def _text_rows(store: Store) -> set[tuple[Any, ...]]:
    t = tables.idx_text.c
    with store.engine.connect() as conn:
        return {tuple(r) for r in conn.execute(select(t.resource_pk, t.param_id, t.body))}


def test_reindex_builds_the_text_of_resources_stored_before_the_index(
    client: TestClient, store: Store
) -> None:
    _world(client)
    before = _text_rows(store)
    assert len(before) >= 5 + 3  # _content of every resource, _text of the three narratives
    with store.engine.begin() as conn:  # as if stored before the text index existed
        conn.execute(delete(tables.idx_text))
    assert _ids(client, "/Observation", _text="chills") == []
    reindex(store.engine)
    assert _text_rows(store) == before
    assert sorted(_ids(client, "/Observation", _text="chills")) == ["o1", "o3"]
