"""PHI sentinel: resources with unique names, identifiers and notes go through every API area, and
no log line the server writes carries any of them, nor a token (https://hl7.org/fhir/R4/security.html, docs/logging.md).

Every record of every logger at DEBUG (SQLAlchemy's included), from every thread (jobs, the audit
recorder), is formatted as the server writes it (`structured_logs.JsonFormatter`) and searched.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.auth import password_reset, totp, users
from fhir_server.store.sql import Store
from fhir_server.structured_logs import JsonFormatter, RequestIdFilter
from tests import factories
from tests.api.test_scope_enforcement import mint
from tests.auth.smart_flow import Authorization, hidden, log_in, register
from tests.bulk_support import BASE, settings_for

FAMILY = "Quizzlewick-Sentinel-4417"
GIVEN = "Ottoline-Sentinel-2290"
IDENTIFIER = "MRN-SENTINEL-880431"
NOTE = "Sentinel note: fears marmoset thunderstorms"
BIRTH = "1931-02-29"  # not a date: refused, and its refusal must not be logged either
CHOSEN_ID = "Quizzlewick-Sentinel-Id-1"
CLIENT_SIDE = ("httpx", "httpcore")
BORN = "1931-03-17"
USERNAME = "sentinel-user-5521"
PASSWORDS = ("Sentinel-Pass-77123 words", "Sentinel-Pass-88234 words", "Sentinel-Pass-99345 words")
SENTINELS = (FAMILY, GIVEN, IDENTIFIER, NOTE, "marmoset", CHOSEN_ID, "1931-02-29", BORN, USERNAME, *PASSWORDS)


def patient(**extra: Any) -> dict[str, Any]:
    return factories.patient(
        family=FAMILY,
        given=GIVEN,
        identifier=[{"system": "urn:oid:1.2.3", "value": IDENTIFIER}],
        text={"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{NOTE}</div>'},
        **extra,
    )


def noted_observation(patient_id: str) -> dict[str, Any]:
    return factories.observation(patient_id, note=[{"text": NOTE}])


@pytest.fixture
def server(store: Store, tmp_path: Path) -> Any:
    (tmp_path / "drop").mkdir()
    settings = settings_for(tmp_path, audit=True, bulk_import_dir=tmp_path / "drop", self_registration="open")
    app = create_app(settings, store=store)
    with TestClient(app, base_url=BASE, raise_server_exceptions=False, follow_redirects=False) as http:
        yield http


def _wait_job(http: TestClient, url: str, headers: dict[str, str]) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        response = http.get(url, headers=headers)
        if response.status_code != 202:
            return response
        time.sleep(0.05)
    raise AssertionError("the bulk job did not finish")


def _wait_task(http: TestClient, task_id: str, headers: dict[str, str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        task = http.get(f"/Task/{task_id}", headers=headers).json()
        if task.get("status") in ("completed", "failed", "cancelled"):
            return
        time.sleep(0.05)
    raise AssertionError("the $ingest task did not finish")


def test_no_log_line_carries_a_sentinel_or_a_token(
    server: TestClient, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("sqlalchemy.engine", "sqlalchemy.pool"):
        caplog.set_level(logging.DEBUG, logger=name)
    http = server
    doctor = mint(http, "user/*.cruds", kind="user", fhir_user="Practitioner/doc1")
    system = mint(http, "system/*.cruds", kind="system")
    tokens = [h["Authorization"].split(" ", 1)[1] for h in (doctor, system)]
    patch_type = {"Content-Type": "application/json-patch+json"}

    # REST: create, read, vread, search by name/identifier, update, patch, history, conditional forms
    created = http.post("/Patient", json=patient(), headers=doctor)
    assert created.status_code == 201
    pid = created.json()["id"]
    assert http.put(f"/Patient/{CHOSEN_ID}", json=patient(id=CHOSEN_ID), headers=doctor).status_code == 201
    obs = http.post("/Observation", json=noted_observation(pid), headers=doctor).json()
    http.get(f"/Patient/{pid}", headers=doctor)
    http.get(f"/Patient/{pid}/_history/1", headers=doctor)
    http.get(
        "/Patient", params={"family": FAMILY, "identifier": f"urn:oid:1.2.3|{IDENTIFIER}"}, headers=doctor
    )
    http.post("/Patient/_search", data={"name": GIVEN}, headers=doctor)
    http.get("/Observation", params={"_content": NOTE, "_include": "Observation:subject"}, headers=doctor)
    http.put(f"/Patient/{pid}", json=patient(id=pid, gender="female"), headers=doctor)
    ops = [{"op": "add", "path": "/name/0/given/-", "value": GIVEN + "-2"}]
    http.patch(f"/Patient/{pid}", json=ops, headers=doctor | patch_type)
    http.get(f"/Patient/{pid}/_history", headers=doctor)
    http.post("/Patient", json=patient(), headers=doctor | {"If-None-Exist": f"identifier={IDENTIFIER}"})
    http.put("/Patient", params={"identifier": IDENTIFIER}, json=patient(), headers=doctor)
    # failures whose messages quote the input: bad date, unknown parameter, unknown id, bad patch
    http.post("/Patient", json=patient(birthDate=BIRTH), headers=doctor)
    http.get("/Patient", params={FAMILY: NOTE}, headers=doctor)
    http.get(f"/Patient/{CHOSEN_ID}-missing", headers=doctor)
    http.get(f"/Observation/{obs['id']}/{FAMILY}", headers=doctor)
    http.patch(
        f"/Patient/{pid}",
        json=[{"op": "test", "path": "/name/0/family", "value": NOTE}],
        headers=doctor | patch_type,
    )
    http.get("/Patient", params={"name": FAMILY}, headers={"Authorization": "Bearer " + tokens[0] + "x"})
    # Bundles: transaction, batch, a failing transaction
    bundle = factories.transaction(
        factories.post_entry(patient()), factories.post_entry(noted_observation(pid))
    )
    assert http.post("/", json=bundle, headers=doctor).status_code == 200
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [factories.post_entry(patient(birthDate=BIRTH))],
    }
    http.post("/", json=batch, headers=doctor)
    http.post("/", json=factories.transaction(factories.post_entry(patient(birthDate=BIRTH))), headers=doctor)
    # operations: $validate, $everything, $export (and its files), $import, $ingest
    http.post("/Patient/$validate", json=patient(birthDate=BIRTH), headers=doctor)
    assert http.get(f"/Patient/{pid}/$everything", headers=doctor).status_code == 200
    kickoff = http.get("/$export", headers=system | {"Prefer": "respond-async"})
    assert kickoff.status_code == 202
    manifest = _wait_job(http, kickoff.headers["content-location"], system)
    assert manifest.status_code == 200 and manifest.json()["output"]
    for item in manifest.json()["output"]:
        assert http.get(item["url"], headers=system).status_code == 200
    body = b"\n".join(
        [
            orjson_line(patient()),
            orjson_line({"resourceType": "Patient", "name": [{"family": FAMILY}], "birthDate": BIRTH}),
        ]
    )
    imported = http.post(
        "/$import", content=body, headers=system | {"Content-Type": "application/fhir+ndjson"}
    )
    assert imported.status_code == 202, imported.text
    assert _wait_job(http, imported.headers["content-location"], system).status_code == 200
    csv = f"date,metric,value,note\n2024-01-01,weight,70,{NOTE}\n".encode()
    ingested = http.post(
        f"/Patient/{pid}/$ingest",
        files={"file": (f"{FAMILY}.csv", csv, "text/csv")},
        headers=doctor,
    )
    assert ingested.status_code == 202, ingested.text
    _wait_task(http, ingested.headers["content-location"].rsplit("/", 1)[1], doctor)
    # the authorization server: a login with a sentinel user name, a bad code exchange
    register(store)
    page = http.get(Authorization().url())
    assert log_in(http, page.text, FAMILY, password=NOTE).status_code == 401
    http.post("/auth/token", data={"grant_type": "authorization_code", "code": NOTE, "client_id": "app"})
    # the account pages: registration (a refused one too), sign-in, password change, TOTP enrolment,
    # and a password reset through an operator's link (a refused new password too)
    account_secrets = _use_the_account_pages(http)
    account_secrets += _reset_the_password(http, store)
    # deletes, conditional too
    http.delete("/Patient", params={"identifier": IDENTIFIER}, headers=doctor)
    http.delete(f"/Patient/{CHOSEN_ID}", headers=doctor)
    http.app.state.audit.flush()  # type: ignore[attr-defined]

    formatter = JsonFormatter()
    stamp = RequestIdFilter()
    lines = []
    for record in caplog.records:
        if record.name.split(".")[0].startswith(CLIENT_SIDE):
            continue  # the test's HTTP client logs its own requests: not the server's log
        stamp.filter(record)
        lines.append(formatter.format(record))
    assert len(lines) > 50, "the server logged its requests"
    assert any('"interaction":"search-type"' in line and '"client_id":"app"' in line for line in lines)
    leaks = [
        (s[:12], line[:400]) for line in lines for s in (*SENTINELS, *tokens, *account_secrets) if s in line
    ]
    assert not leaks, leaks
    token_pieces = [t.split(".")[2][:20] for t in tokens]  # a signature fragment counts too
    assert not [line for line in lines for piece in token_pieces if piece in line]


def _use_the_account_pages(http: TestClient) -> list[str]:
    """Register with the sentinels, sign in, change the password, enrol TOTP; returns the secrets seen."""
    first, second, _ = PASSWORDS
    page = http.get("/auth/register")
    details = {"given": GIVEN, "family": FAMILY, "username": USERNAME}
    form = {
        "csrf": hidden(page.text, "csrf"),
        **details,
        "birthdate": BIRTH,
        "password": first,
        "password2": first,
    }
    refused = http.post("/auth/register", data=form)
    assert refused.status_code == 400
    form = {**form, "csrf": hidden(refused.text, "csrf"), "birthdate": BORN}
    assert http.post("/auth/register", data=form).status_code == 201
    page = http.get("/auth/account")
    login = {"csrf": hidden(page.text, "csrf"), "username": USERNAME, "password": first, "totp": ""}
    assert http.post("/auth/account/login", data={**login, "password": second}).status_code == 401
    signed_in = http.post("/auth/account/login", data=login)
    assert signed_in.status_code == 200
    csrf = hidden(signed_in.text, "csrf")
    change = {"csrf": csrf, "current": first, "new": second, "new2": second}
    assert http.post("/auth/account/password", data=change).status_code == 200
    setup = http.post("/auth/account/totp", data={"csrf": csrf, "action": "start"})
    secret = re.search(r'id="totp-secret">([^<]*)<', setup.text)
    assert secret is not None
    key = secret.group(1).replace(" ", "")
    code = totp.generate(totp.decode_secret(key), time.time())
    confirmed = http.post("/auth/account/totp", data={"csrf": csrf, "action": "confirm", "code": code})
    assert confirmed.status_code == 200
    return [key, csrf, http.cookies["fhir_account_session"]]


def _reset_the_password(http: TestClient, store: Store) -> list[str]:
    """Open an operator's reset link, refuse a weak password, set the third one; returns the secrets seen."""
    with store.write() as tx:
        user = users.get_by_username(tx.conn, USERNAME)
        assert user is not None
        token = password_reset.issue(tx.conn, user.pk, now=int(time.time())).token
    page = http.get(password_reset.PATH, params={"token": token})
    assert page.status_code == 200
    form = {
        "csrf": hidden(page.text, "csrf"),
        "token": token,
        "new": USERNAME + "-x",
        "new2": USERNAME + "-x",
    }
    assert http.post(password_reset.PATH, data=form).status_code == 400  # contains the username
    form = {**form, "new": PASSWORDS[2], "new2": PASSWORDS[2]}
    assert http.post(password_reset.PATH, data=form).status_code == 200
    return [token, form["csrf"]]


def orjson_line(resource: dict[str, Any]) -> bytes:
    import orjson

    return orjson.dumps(resource)
