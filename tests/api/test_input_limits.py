"""Hostile input answers a 400 OperationOutcome naming where, never a 500 (issue 10, defect 4).

Each test reproduces one cause of the 500s found (PostgreSQL DataError on NUL, 64-bit overflow,
Python's int-string limit, RecursionError, jsonpatch's pointer parser, a forged `_cursor`).
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from fhir_server.store import tables
from fhir_server.store.sql import Store
from tests import factories

FHIR = {"Content-Type": "application/fhir+json"}


def _rejected(r: Any, where: str) -> str:
    assert r.status_code == 400, r.text
    issue = r.json()["issue"][0]
    assert issue["expression"] == [where]
    return str(issue["diagnostics"])


def _patient(client: TestClient) -> str:
    return str(client.post("/Patient", json=factories.patient(), headers=FHIR).json()["id"])


def _rows(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(tables.resource)).scalar_one())


def test_nul_in_a_query_value_is_a_400_naming_the_parameter(client: TestClient) -> None:
    assert "U+0000" in _rejected(client.get("/Patient", params={"family": "a\x00b"}), "family")


def test_nul_in_an_id_is_a_400(client: TestClient) -> None:
    _rejected(client.get("/Patient/a%00b"), "url")
    _rejected(
        client.put("/Patient/a%00b", json={"resourceType": "Patient", "id": "a\x00b"}, headers=FHIR), "url"
    )


def test_nul_in_a_header_is_a_400_naming_the_header(client: TestClient) -> None:
    pid = _patient(client)
    _rejected(client.get(f"/Patient/{pid}", headers={"If-None-Match": 'W/"1\x00"'}), "if-none-match")


@pytest.mark.parametrize(
    ("path", "form", "field"),
    [
        ("/auth/token", {"grant_type": "authorization_code", "code": "a\x00b"}, "code"),
        ("/auth/login", {"username": "a\x00b", "password": "x"}, "username"),
        ("/auth/introspect", {"token": "t\x00"}, "token"),
        ("/Patient/_search", {"family": "a\x00b"}, "family"),
    ],
)
def test_nul_in_a_form_field_is_a_400_naming_the_field(
    client: TestClient, path: str, form: dict[str, str], field: str
) -> None:
    _rejected(client.post(path, data=form), field)


def _multipart(field_name: str, field_value: str, filename: str) -> bytes:
    """A multipart/form-data body written byte by byte (clients would escape what it tests)."""
    return (
        b"--B\r\n"
        + f'Content-Disposition: form-data; name="{field_name}"\r\n\r\n{field_value}\r\n'.encode()
        + b"--B\r\n"
        + f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'.encode()
        + b"Content-Type: text/csv\r\n\r\ndate,metric\n\r\n--B--\r\n"
    )


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (_multipart("format", "csv\x00", "a.csv"), "format"),
        (_multipart("for\x00mat", "csv", "a.csv"), "multipart field name"),
        (_multipart("format", "csv", "a\x00.csv"), "file filename"),
    ],
)
def test_nul_in_a_multipart_field_or_filename_is_a_400_naming_it(
    client: TestClient, store: Store, body: bytes, where: str
) -> None:
    """multipart/form-data ($ingest uploads) follows the rules of urlencoded forms (fails on ac676a0)."""
    pid = _patient(client)
    ctype = {"Content-Type": "multipart/form-data; boundary=B"}
    _rejected(client.post(f"/Patient/{pid}/$ingest", content=body, headers=ctype), where)
    with store.read() as tx:
        assert tx.count_history(res_type="Task") == 0  # no job was started


def test_nul_in_an_oauth_query_parameter_is_a_400(client: TestClient) -> None:
    _rejected(
        client.get("/auth/authorize", params={"response_type": "code", "client_id": "a\x00"}), "client_id"
    )


def test_a_clean_form_still_reaches_the_route(client: TestClient) -> None:
    pid = _patient(client)
    r = client.post("/Patient/_search", data={"_id": pid})
    assert r.status_code == 200
    assert r.json()["total"] == 1


def test_a_version_id_beyond_64_bits_is_a_400(client: TestClient) -> None:
    pid = _patient(client)
    _rejected(client.get(f"/Patient/{pid}/_history/99999999999999999999999"), "vid")


def test_integer_parameters_beyond_64_bits_are_a_400(client: TestClient) -> None:
    _rejected(client.get("/Patient/_history", params={"_page_before": "9" * 30}), "_page_before")
    _rejected(client.get("/Patient", params={"_count": "9" * 30}), "_count")


def test_a_5000_digit_if_match_is_a_400_and_changes_nothing(client: TestClient, store: Store) -> None:
    pid = _patient(client)
    before = _rows(store)
    body = {**factories.patient(), "id": pid}
    r = client.put(f"/Patient/{pid}", json=body, headers={**FHIR, "If-Match": 'W/"' + "9" * 5000 + '"'})
    _rejected(r, "if-match")
    assert _rows(store) == before


def test_a_5000_digit_if_match_in_a_transaction_entry_is_a_400(client: TestClient) -> None:
    pid = _patient(client)
    entry = {
        "resource": {**factories.patient(), "id": pid},
        "request": {"method": "PUT", "url": f"Patient/{pid}", "ifMatch": 'W/"' + "9" * 5000 + '"'},
    }
    r = client.post(
        "/", json={"resourceType": "Bundle", "type": "transaction", "entry": [entry]}, headers=FHIR
    )
    assert r.status_code == 400, r.text


def _nested_extension(levels: int) -> dict[str, Any]:
    extension: dict[str, Any] = {"url": "http://example.org/x", "valueString": "leaf"}
    for _ in range(levels):
        extension = {"url": "http://example.org/x", "extension": [extension]}
    return extension


def test_extensions_nested_hundreds_deep_are_a_400_and_change_nothing(
    client: TestClient, store: Store
) -> None:
    before = _rows(store)
    body = {**factories.patient(), "extension": [_nested_extension(400)]}
    assert "deeper than" in _rejected(client.post("/Patient", json=body, headers=FHIR), "$this")
    assert _rows(store) == before


def test_arrays_nested_hundreds_deep_are_a_400(client: TestClient) -> None:
    nested: Any = "x"
    for _ in range(400):
        nested = [nested]
    _rejected(client.post("/Patient", json={**factories.patient(), "name": nested}, headers=FHIR), "$this")


def test_extensions_nested_within_the_limit_are_accepted(client: TestClient) -> None:
    body = {**factories.patient(), "extension": [_nested_extension(45)]}
    assert client.post("/Patient", json=body, headers=FHIR).status_code == 201


def test_a_json_patch_pointer_with_an_invalid_escape_is_a_400(client: TestClient, store: Store) -> None:
    pid = _patient(client)
    before = _rows(store)
    ops = [{"op": "replace", "path": "/name/~2", "value": []}]
    r = client.patch(f"/Patient/{pid}", json=ops, headers={"Content-Type": "application/json-patch+json"})
    _rejected(r, "$this[0].path")
    assert _rows(store) == before


def test_a_forged_cursor_of_deeply_nested_json_is_a_400(client: TestClient) -> None:
    forged = base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode().rstrip("=")
    _rejected(client.get("/Patient", params={"_cursor": forged}), "_cursor")


def test_the_servers_own_cursor_still_pages(client: TestClient) -> None:
    for _ in range(3):
        _patient(client)
    page = client.get("/Patient", params={"_count": "2"}).json()
    following = next(link["url"] for link in page["link"] if link["relation"] == "next")
    assert len(client.get(following).json()["entry"]) == 1
