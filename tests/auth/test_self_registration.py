"""Patient self-registration through the real pages (fhir_server/operations/patient_registration.py, docs/smart-on-fhir.md "Accounts").

Headless: the tests fetch each page, read its hidden form token and post the form as a browser
would, with the session cookie; then the new account logs in to a SMART app like any other.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from fhir_server.auth import invitations, login_throttle, users
from fhir_server.auth.login_throttle import Backoff
from fhir_server.auth.tables import auth_user, registration_invite
from fhir_server.operations import patient_registration
from fhir_server.settings import Settings
from fhir_server.store.sql import Store
from tests.auth.account_flow import (
    DETAILS,
    app_client,
    cheap_hashes,
    invite,
    invite_registration,
    open_registration,
    register,
)
from tests.auth.smart_flow import (
    PASSWORD,
    Authorization,
    authorize,
    bearer,
    claims,
    exchange,
    hidden,
)
from tests.auth.smart_flow import (
    register as add_client,
)

__all__ = ["cheap_hashes", "invite_registration", "open_registration"]  # fixtures


def patients(store: Store) -> list[dict[str, Any]]:
    with store.read() as tx:
        return [orjson.loads(r.content) for r in tx.current_of_type("Patient", limit=100)]


def user_count(store: Store) -> int:
    with store.read() as tx:
        return int(tx.conn.execute(select(func.count()).select_from(auth_user)).scalar_one())


def test_registration_is_off_unless_the_operator_turns_it_on(store: Store, smart_client: TestClient) -> None:
    assert Settings().self_registration == "off"
    assert smart_client.get("/auth/register").status_code == 404
    posted = smart_client.post("/auth/register", data={"username": "eve", "password": PASSWORD})
    assert posted.status_code == 404
    assert user_count(store) == 0 and patients(store) == []


def test_a_person_registers_and_their_app_opens_their_own_new_record(
    store: Store, open_registration: TestClient
) -> None:
    http = open_registration
    done = register(http, "ada")
    assert done.status_code == 201, done.text
    assert "ada" in done.text and PASSWORD not in done.text
    [patient] = patients(store)
    assert patient["name"][0] == {"use": "official", "family": "Lovelace", "given": ["Ada", "Maria"]}
    assert patient["birthDate"] == "1985-12-10" and patient["active"] is True
    with store.read() as tx:
        user = users.get_by_username(tx.conn, "ada")
    assert user is not None and user.fhir_user == f"Patient/{patient['id']}"
    # the new account signs in to a SMART app: the token is for that Patient, which it reads
    add_client(store)
    request = Authorization()
    token = exchange(http, request, authorize(http, request, "ada")["code"]).json()
    assert token["patient"] == patient["id"]
    assert claims(token["id_token"])["fhirUser"].endswith(f"Patient/{patient['id']}")
    assert http.get(f"/Patient/{patient['id']}", headers=bearer(token["access_token"])).status_code == 200


def test_a_taken_username_is_refused_in_any_case_and_nothing_about_its_owner_shows(
    store: Store, open_registration: TestClient
) -> None:
    http = open_registration
    assert register(http, "grace", given="Grace", family="Hopper").status_code == 201
    for name in ("grace", "GRACE"):
        again = register(http, name, given="Other", family="Person")
        assert again.status_code == 400
        assert "This username is not available" in again.text
        assert "Hopper" not in again.text and "Patient/" not in again.text
    assert user_count(store) == 1 and len(patients(store)) == 1


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"username": "has space"}, "username"),
        ({"given": ""}, "given"),
        ({"family": "x" * 101}, "family"),
        ({"family": "123"}, "family"),
        ({"birthdate": "1985-02-30"}, "birthdate"),
        ({"birthdate": "2999-01-01"}, "birthdate"),
        ({"birthdate": "1985-W01-1"}, "birthdate"),
        ({"password": "short", "password2": "short"}, "password"),
        ({"password": "password1", "password2": "password1"}, "password"),
        (
            {"password": "noemi-secret-words", "password2": "noemi-secret-words", "username": "noemi"},
            "password",
        ),
        ({"password2": "something else entirely"}, "password2"),
    ],
)
def test_bad_details_are_shown_by_field_and_nothing_is_created(
    store: Store, open_registration: TestClient, fields: dict[str, str], field: str
) -> None:
    fields = dict(fields)  # the parameter is shared by the runs on both databases
    response = register(open_registration, fields.pop("username", "noemi"), **fields)
    assert response.status_code == 400, response.text
    assert f'id="{field}-problem"' in response.text
    assert 'aria-invalid="true"' in response.text
    assert 'name="password" autocomplete' in response.text and 'value="' + PASSWORD not in response.text
    assert user_count(store) == 0 and patients(store) == []


def test_a_form_without_its_session_and_token_is_refused(store: Store, open_registration: TestClient) -> None:
    http = open_registration
    page = http.get("/auth/register")
    form = {**DETAILS, "username": "mallory", "password": PASSWORD, "password2": PASSWORD}
    token = hidden(page.text, "csrf")
    assert http.post("/auth/register", data=form).status_code == 403  # no token
    assert http.post("/auth/register", data={**form, "csrf": token + "x"}).status_code == 403
    other_browser = TestClient(http.app, base_url=str(http.base_url), raise_server_exceptions=False)
    assert other_browser.post("/auth/register", data={**form, "csrf": token}).status_code == 403  # no cookie
    garbled = http.post("/auth/register", content=b"\xff", headers={"Content-Type": "text/plain"})
    assert garbled.status_code == 403
    assert user_count(store) == 0
    fresh = hidden(garbled.text, "csrf")  # a refused form comes back with a new session to fill it in again
    assert http.post("/auth/register", data={**form, "csrf": fresh}).status_code == 201
    assert (
        http.post("/auth/register", data={**form, "csrf": fresh, "username": "m2"}).status_code == 403
    )  # spent


def test_an_invite_code_is_needed_works_once_and_expires(
    store: Store, invite_registration: TestClient
) -> None:
    http = invite_registration
    assert register(http, "ann").status_code == 400  # no code
    assert register(http, "ann", invite="AAAA-BBBB-CCCC-DDDD-EEEE").status_code == 400
    code = invite(http)
    typed = code.lower().replace("-", " ")  # as a person might type it
    assert register(http, "ann", invite=typed).status_code == 201
    used = register(http, "ben", invite=code)
    assert used.status_code == 400 and "already used" in used.text
    with store.write() as tx:
        expired, _ = invitations.create(tx.conn, days=1, now=int(time.time()) - 2 * 24 * 3600)
    assert register(http, "ben", invite=expired).status_code == 400
    assert user_count(store) == 1
    with store.read() as tx:
        stored = [row.code_hash for row in tx.conn.execute(select(registration_invite))]
    assert code not in str(stored) and code.replace("-", "") not in str(stored)


def test_only_an_administrator_creates_invites_and_lists_them_without_codes(
    invite_registration: TestClient,
) -> None:
    http = invite_registration
    assert http.post("/admin/invites", json={"days": 7}).status_code == 401
    assert http.post("/admin/invites", json={"days": 7}, headers=bearer("not-the-secret")).status_code == 401
    for days in (0, 400, "7", True, None):
        answer = http.post("/admin/invites", json={"days": days}, headers=bearer("test-admin-secret"))
        assert answer.status_code == 400, (days, answer.text)
    code = invite(http)
    listed = http.get("/admin/invites", headers=bearer("test-admin-secret")).json()
    assert [i["state"] for i in listed] == ["open"] and code not in str(listed)


def test_wrong_invite_codes_from_one_address_are_throttled(
    store: Store, invite_registration: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(login_throttle, "ADDRESS", Backoff(free=3, base=60, cap=60, forget=3600))
    http = invite_registration
    for _ in range(3):
        assert register(http, "guess", invite="AAAA-BBBB-CCCC-DDDD-EEEE").status_code == 400
    refused = register(http, "guess", invite=invite(http))
    assert refused.status_code == 429 and 0 < int(refused.headers["retry-after"]) <= 60
    assert user_count(store) == 0


@given(
    st.dictionaries(
        st.sampled_from(
            ["username", "password", "password2", "given", "family", "birthdate", "invite", "csrf"]
        ),
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=300),
    )
)
def test_no_form_gives_a_server_error(store: Store, smart_settings: Settings, fields: dict[str, str]) -> None:
    with app_client(store, smart_settings, self_registration="invite") as http:
        page = http.get("/auth/register")
        form = {"csrf": hidden(page.text, "csrf"), **fields} if "csrf" not in fields else fields
        response = http.post("/auth/register", data=form)
        assert response.status_code in (201, 400, 403, 429), response.text


def test_registrations_from_one_address_are_throttled(
    store: Store, open_registration: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(patient_registration, "REGISTRATIONS", Backoff(free=2, base=60, cap=60, forget=3600))
    http = open_registration
    assert register(http, "first").status_code == 201
    assert register(http, "second").status_code == 201
    refused = register(http, "third")
    # the wait counts from the second registration: a slow machine may have spent a second since
    assert refused.status_code == 429 and 58 <= int(refused.headers["retry-after"]) <= 60
    assert user_count(store) == 2


def test_the_app_login_page_links_to_registration_only_when_it_is_open(
    store: Store, smart_client: TestClient, open_registration: TestClient
) -> None:
    add_client(store)
    closed = smart_client.get(Authorization().url()).text
    opened = open_registration.get(Authorization().url()).text
    assert 'id="register-link"' not in closed and 'id="account-link"' in closed
    assert 'href="/auth/register" id="register-link"' in opened
