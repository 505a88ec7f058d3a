"""Property-based fuzzing of every input (issue 10, acceptance 2): no answer is ever a 5xx, and a rejected
write leaves the `resource` table unchanged (https://hl7.org/fhir/R4/http.html).

Hypothesis draws query strings, ids, headers, JSON bodies (deep, large, any unicode, control characters),
XML bodies (random trees of FHIR and XHTML names, any bytes; answered in XML, which must parse),
JSON Patch documents, paging cursors and OAuth forms; schemathesis drives the operations of the OpenAPI
description the server serves at /openapi.json (made from its CapabilityStatement), with a valid token.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from fhir_server import xml_format
from fhir_server.auth import clients
from fhir_server.auth.operator_token import mint
from fhir_server.settings import Settings
from fhir_server.store import tables
from fhir_server.store.sql import Store
from tests import factories

FHIR = {"Content-Type": "application/fhir+json"}
any_text = st.text(st.characters(codec="utf-8"), max_size=40)  # every code point, control characters too
latin1_text = st.text(st.characters(codec="latin-1"), max_size=300)  # what an HTTP header can carry
names = st.sampled_from(
    [
        "family",
        "_id",
        "_count",
        "_sort",
        "_include",
        "birthdate",
        "_cursor",
        "_summary",
        "_text",
        "_content",
        "_list",
    ]
)
json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=40,
)


def _rows(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(tables.resource)).scalar_one())


def _nested(depth: int, leaf: Any, as_object: bool) -> Any:
    for _ in range(depth):
        leaf = {"extension": [leaf]} if as_object else [leaf]
    return leaf


def _patient(client: TestClient) -> str:
    return str(client.post("/Patient", json=factories.patient(), headers=FHIR).json()["id"])


@given(params=st.lists(st.tuples(names | any_text, any_text), max_size=5))
def test_any_query_string_is_never_a_server_error(client: TestClient, params: list[tuple[str, str]]) -> None:
    assert client.get("/Patient", params=params).status_code < 500
    assert client.get("/Patient/_history", params=params).status_code < 500


@given(res_id=any_text, vid=any_text)
def test_any_id_or_version_id_is_never_a_server_error(client: TestClient, res_id: str, vid: str) -> None:
    path = f"/Patient/{quote(res_id, safe='')}"
    assert client.get(path).status_code < 500
    assert client.get(f"{path}/_history/{quote(vid, safe='')}").status_code < 500
    assert client.delete(path).status_code < 500


@given(
    header=st.sampled_from(
        ["If-Match", "If-None-Match", "If-Modified-Since", "Prefer", "Authorization", "Accept"]
    ),
    value=latin1_text | st.integers(min_value=0).map(lambda n: f'W/"{n}"'),
)
def test_any_header_is_never_a_server_error_and_a_rejected_update_writes_nothing(
    client: TestClient, store: Store, header: str, value: str
) -> None:
    pid = _patient(client)
    raw = value.encode("latin-1")
    assert client.get(f"/Patient/{pid}", headers={header: raw}).status_code < 500
    before = _rows(store)
    body = {**factories.patient(), "id": pid}
    r = client.put(f"/Patient/{pid}", json=body, headers={**FHIR, header: raw})
    assert r.status_code < 500
    if r.status_code >= 400:
        assert _rows(store) == before


@given(
    body=json_values | st.builds(_nested, st.integers(0, 300), json_scalars, st.booleans()),
    in_patient=st.booleans(),
)
def test_any_json_body_is_never_a_server_error_and_a_rejected_one_writes_nothing(
    client: TestClient, store: Store, body: Any, in_patient: bool
) -> None:
    if in_patient:
        body = {**factories.patient(), "extension": [body]}
    before = _rows(store)
    r = client.post("/Patient", json=body, headers=FHIR)
    assert r.status_code < 500
    if r.status_code >= 400:
        assert _rows(store) == before


xml_names = st.sampled_from(
    ["Patient", "Observation", "Bundle", "name", "family", "given", "extension", "url", "value", "id", "text",
     "div", "status", "contained", "entry", "resource", "valueQuantity", "birthDate", "active", "x"]
)  # fmt: skip
xml_namespaces = st.sampled_from(
    ["", ' xmlns="http://hl7.org/fhir"', ' xmlns="http://www.w3.org/1999/xhtml"']
)


def _xml_element(name: str, ns: str, attrs: dict[str, str], inner: list[str]) -> str:
    quoted = "".join(f' {k}="{v}"' for k, v in attrs.items())
    return f"<{name}{ns}{quoted}>{''.join(inner)}</{name}>"


xml_text = any_text.map(lambda t: t.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;"))
xml_trees = st.recursive(
    st.builds(
        _xml_element, xml_names, xml_namespaces, st.dictionaries(xml_names, xml_text, max_size=2), st.just([])
    ),
    lambda children: st.builds(
        _xml_element,
        xml_names,
        xml_namespaces,
        st.dictionaries(xml_names, xml_text, max_size=2),
        st.lists(children | xml_text, max_size=4),
    ),
    max_leaves=30,
)


@given(
    body=xml_trees.map(lambda x: x.encode()) | st.binary(max_size=300),
    header=st.sampled_from(["application/fhir+xml", "application/xml", "text/xml"]),
    path=st.sampled_from(["/Patient", "/"]),
)
def test_any_xml_body_is_never_a_server_error_and_a_rejected_one_writes_nothing(
    client: TestClient, store: Store, body: bytes, header: str, path: str
) -> None:
    before = _rows(store)
    r = client.post(path, content=body, headers={"Content-Type": header, "Accept": header})
    assert r.status_code < 500
    if r.status_code >= 400:
        assert _rows(store) == before
    if r.headers["content-type"].startswith(("application/fhir+xml", "application/xml")):
        assert xml_format.parse(r.content)["resourceType"] in ("OperationOutcome", "Patient", "Bundle")


pointers = (
    st.lists(st.sampled_from(["name", "0", "~0", "~1", "~2", "~", "-", "family", "x"]), max_size=4).map(
        lambda parts: "".join("/" + p for p in parts)
    )
    | any_text
)
operations = st.fixed_dictionaries(
    {"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "nope"]), "path": pointers},
    optional={"from": pointers, "value": json_values},
)


@given(ops=st.lists(operations, max_size=4) | json_values)
def test_any_json_patch_is_never_a_server_error_and_a_rejected_one_writes_nothing(
    client: TestClient, store: Store, ops: Any
) -> None:
    pid = _patient(client)
    before = _rows(store)
    r = client.patch(f"/Patient/{pid}", json=ops, headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code < 500
    if r.status_code >= 400:
        assert _rows(store) == before


@given(
    cursor=any_text
    | st.binary(max_size=200).map(lambda b: base64.urlsafe_b64encode(b).decode().rstrip("="))
    | st.integers(0, 5000).map(lambda n: base64.urlsafe_b64encode(b"[" * n + b"]" * n).decode().rstrip("=")),
    sort=st.sampled_from([None, "family", "-birthdate"]),
)
def test_any_paging_cursor_is_never_a_server_error(client: TestClient, cursor: str, sort: str | None) -> None:
    params = {"_cursor": cursor, **({"_sort": sort} if sort else {})}
    assert client.get("/Patient", params=params).status_code < 500


@given(
    path=st.sampled_from(
        [
            "/auth/token",
            "/auth/login",
            "/auth/introspect",
            "/auth/revoke",
            "/Patient/_search",
            "/auth/register",
            "/auth/account/login",
            "/auth/account/password",
            "/auth/account/totp",
            "/auth/account/logout",
            "/auth/reset",
        ]
    ),
    form=st.dictionaries(
        st.sampled_from(
            [
                "grant_type",
                "code",
                "client_id",
                "username",
                "password",
                "token",
                "family",
                "csrf",
                "action",
                "new",
            ]
        )
        | any_text,
        any_text,
        max_size=5,
    ),
)
def test_any_form_is_never_a_server_error(client: TestClient, path: str, form: dict[str, str]) -> None:
    assert client.post(path, data=form).status_code < 500


@given(token=any_text)
def test_any_password_reset_link_token_is_never_a_server_error(client: TestClient, token: str) -> None:
    assert client.get("/auth/reset", params={"token": token}).status_code < 500


def test_schemathesis_finds_no_server_error_on_any_served_operation(
    smart_client: TestClient, store: Store, smart_settings: Settings
) -> None:
    """Issue 13, acceptance 2: the description the server serves at /openapi.json (made from its
    CapabilityStatement), a bounded number of examples, a valid system/*.cruds token: no 5xx."""
    with store.write() as tx:
        clients.register(tx.conn, "fuzzer", "public", redirect_uris=["http://localhost/cb"], name="fuzzer")
    token = mint(store, smart_settings, "fuzzer", "system/*.cruds", 30)
    app: Any = smart_client.app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    assert len(list(schema.get_all_operations())) > 1000  # every type's interactions, not a handful
    auth = {"Authorization": f"Bearer {token}"}

    @settings(max_examples=150)
    @given(case=schema.as_strategy())
    def no_server_error(case: Any) -> None:
        response = case.call(headers=auth)
        assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text[:300]}"
        assert response.status_code != 401, f"{case.method} {case.formatted_path}: the token was refused"

    no_server_error()


clinical_names = st.sampled_from(
    ["_type", "_since", "start", "end", "_count", "_cursor", "patient", "subject", "code", "system", "coding",
     "max", "statistic", "interval", "timezone", "duration", "include", "limit", "date", "category"]
)  # fmt: skip


clinical_parameters = st.builds(
    lambda parts: {"resourceType": "Parameters", "parameter": parts},
    st.lists(
        st.builds(
            lambda name, kind, value: {"name": name, f"value{kind}": value},
            clinical_names,
            st.sampled_from(["String", "Code", "Uri", "Boolean", "Integer", "Coding", "Period", "Decimal"]),
            json_values,
        ),
        max_size=5,
    ),
)


@given(
    params=st.lists(st.tuples(clinical_names | any_text, any_text), max_size=6),
    body=json_values | clinical_parameters,
)
def test_any_input_to_the_clinical_operations_is_never_a_server_error(
    client: TestClient, params: list[tuple[str, str]], body: Any
) -> None:
    """$everything, $lastn, $stats (docs/clinical-operations.md): any query, any POSTed JSON."""
    pid = _patient(client)
    for path in (
        f"/Patient/{pid}/$everything",
        "/Patient/$everything",
        "/Observation/$lastn",
        "/Observation/$stats",
    ):
        assert client.get(path, params=params).status_code < 500, path
        assert client.post(path, json=body, headers=FHIR).status_code < 500, path
