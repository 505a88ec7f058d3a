"""A patient's token finds only its own data through `_text`, `_content` and `_list`, and `_list` needs
a List the caller may read (https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html).

Two patients of the public `demo-app` client (two users of the same client) and the operator's
system token; real access tokens, validated per request.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.store.sql import Store
from tests import factories
from tests.api.test_bulk_isolation import operator, patient_token
from tests.bulk_support import http, put, settings

__all__ = ["http", "settings"]  # fixtures (tests/bulk_support.py)

Headers = dict[str, str]


def _note(patient: str) -> dict[str, Any]:
    div = f'<div xmlns="http://www.w3.org/1999/xhtml">Secret fever of {patient}</div>'
    return {
        **factories.observation(patient),
        "id": f"{patient.lower()}-note",
        "text": {"status": "generated", "div": div},
    }


def _list(rid: str, subject: str | None, *items: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "List",
        "id": rid,
        "status": "current",
        "mode": "working",
        "entry": [{"item": {"reference": f"Observation/{i}"}} for i in items],
    }
    if subject is not None:
        out["subject"] = {"reference": f"Patient/{subject}"}
    return out


@pytest.fixture
def data(store: Store) -> None:
    """Patients A and B with a narrative each; B's List names both notes; an unowned List names A's."""
    put(
        store,
        {**factories.patient("Alpha", "Ann"), "id": "A"},
        {**factories.patient("Beta", "Bob"), "id": "B"},
    )
    put(store, _note("A"), _note("B"))
    put(
        store,
        _list("list-a", "A", "a-note"),
        _list("list-b", "B", "a-note", "b-note"),
        _list("list-x", None, "a-note"),
    )


def _found(
    http: TestClient, headers: Headers, path: str = "/Observation", **params: str
) -> tuple[int, set[str]]:
    response = http.get(path, params=params, headers=headers)
    return response.status_code, {e["resource"]["id"] for e in response.json().get("entry", [])}


def test_two_patients_of_the_same_client_find_only_their_own_text(http: TestClient, data: None) -> None:
    a, b = patient_token(http, "A", 1), patient_token(http, "B", 2)
    assert _found(http, a, _text="secret") == (200, {"a-note"})
    assert _found(http, b, _text="secret") == (200, {"b-note"})
    assert _found(http, a, _content="secret fever") == (200, {"a-note"})
    assert _found(http, a, _text="secret", subject="Patient/B") == (200, set())
    counted = http.get("/Observation", params={"_text": "secret", "_total": "accurate"}, headers=a)
    assert counted.json()["total"] == 1
    status, found = _found(http, a, "/", _content="secret OR alpha OR beta", _type="Observation,Patient")
    assert status in (200, 403) and found <= {"a-note", "A"}


def test_list_needs_a_list_the_caller_may_read(http: TestClient, data: None) -> None:
    a, b = patient_token(http, "A", 1), patient_token(http, "B", 2)
    assert _found(http, a, _list="list-a") == (200, {"a-note"})
    # B's List names A's note, which A may read: the List is B's, so A gets nothing through it.
    assert _found(http, a, _list="list-b") == (200, set())
    assert _found(http, a, _list="list-a,list-b") == (200, {"a-note"})
    assert _found(http, a, _list="list-x") == (200, set())  # in no compartment: not A's to read
    # B may read its List, but only its own note through it.
    assert _found(http, b, _list="list-b") == (200, {"b-note"})
    assert _found(http, b, _list="list-a") == (200, set())


def test_list_without_a_list_scope_is_refused(http: TestClient, data: None) -> None:
    no_lists = patient_token(http, "A", 1, "patient/Observation.rs")
    assert _found(http, no_lists, _list="list-a")[0] == 403
    assert _found(http, no_lists, _text="secret") == (200, {"a-note"})
    chained = patient_token(http, "A", 1)
    status, _ = _found(http, chained, "/Observation", **{"subject:Patient._list": "list-a"})
    assert status in (400, 403)


def test_the_operator_finds_everything(http: TestClient, data: None) -> None:
    ops = operator(http)
    assert _found(http, ops, _text="secret") == (200, {"a-note", "b-note"})
    assert _found(http, ops, _list="list-b") == (200, {"a-note", "b-note"})
    assert _found(http, ops, _list="list-x") == (200, {"a-note"})
