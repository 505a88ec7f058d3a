"""Password recovery without mail: an operator's single-use, expiring reset link, used through the real page (fhir_server/auth/password_reset.py).

Headless like tests/auth/test_account_self_service.py: the link's page is fetched, its form token and
hidden link token read, and the form posted with the session cookie the page set. Both databases.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from fhir_server.auth import password_reset, users
from fhir_server.auth.login_throttle import PAIR
from fhir_server.auth.tables import password_reset as password_reset_table
from fhir_server.store.sql import Store
from tests.auth.account_flow import app_client, change_password, cheap_hashes, sign_in
from tests.auth.smart_flow import PASSWORD, add_patient, add_user, bearer, hidden, register
from tests.auth.test_account_self_service import smart_login_status, tokens

__all__ = ["cheap_hashes"]  # fixture
NEW = "a brand new passphrase"


@pytest.fixture
def http(store: Store, smart_client: TestClient) -> Iterator[TestClient]:
    """The SMART server with app `app`, and patient user `anna` (Patient/p1)."""
    register(store)
    add_patient(store, "p1")
    add_user(store, "anna", "Patient/p1")
    yield smart_client


def issue_link(store: Store, username: str = "anna", *, hours: int = 24, now: float | None = None) -> str:
    with store.write() as tx:
        user = users.get_by_username(tx.conn, username)
        assert user is not None
        when = int(time.time() if now is None else now)
        return password_reset.issue(tx.conn, user.pk, hours=hours, now=when).token


def open_link(http: TestClient, token: str) -> httpx.Response:
    return http.get(password_reset.PATH, params={"token": token})


def choose(http: TestClient, page: str, new: str, again: str | None = None) -> httpx.Response:
    form = {
        "csrf": hidden(page, "csrf"),
        "token": hidden(page, "token"),
        "new": new,
        "new2": new if again is None else again,
    }
    return http.post(password_reset.PATH, data=form)


def test_a_reset_link_sets_a_new_password_once(http: TestClient, store: Store) -> None:
    token = issue_link(store)
    page = open_link(http, token)
    assert page.status_code == 200 and 'id="reset-form"' in page.text and "anna" in page.text
    done = choose(http, page.text, NEW)
    assert done.status_code == 200 and 'id="notice"' in done.text
    assert NEW not in done.text and token not in done.text
    assert smart_login_status(http, PASSWORD) == 401
    assert smart_login_status(http, NEW) == 200
    again = open_link(http, token)
    assert again.status_code == 404 and 'id="reset-form"' not in again.text
    second_page = page.text
    assert choose(http, second_page, "yet another passphrase").status_code in (403, 404)
    assert smart_login_status(http, NEW) == 200


def test_a_link_is_spent_once_even_from_two_open_pages(http: TestClient, store: Store) -> None:
    token = issue_link(store)
    with app_client(store, http.app.state.settings) as other_browser:  # type: ignore[attr-defined]
        first, second = open_link(http, token), open_link(other_browser, token)
        assert choose(http, first.text, NEW).status_code == 200
        late = choose(other_browser, second.text, "yet another passphrase")
        assert late.status_code == 404
    assert smart_login_status(http, NEW) == 200


def test_an_expired_link_is_refused(http: TestClient, store: Store) -> None:
    old = issue_link(store, hours=1, now=time.time() - 3601)
    assert open_link(http, old).status_code == 404
    token = issue_link(store)
    page = open_link(http, token)
    assert page.status_code == 200
    with store.write() as tx:  # the hour passes while the page is open
        tx.conn.execute(update(password_reset_table).values(expires_at=int(time.time()) - 1))
    assert choose(http, page.text, NEW).status_code == 404
    assert smart_login_status(http, PASSWORD) == 200


def test_a_wrong_token_is_refused_and_guessing_is_throttled_like_logins(
    http: TestClient, store: Store
) -> None:
    token = issue_link(store)
    for guess in ("x", token[:-1] + ("A" if token[-1] != "A" else "B"), "", token + "x"):
        refused = open_link(http, guess)
        assert refused.status_code == 404 and 'id="reset-form"' not in refused.text
    for _ in range(PAIR.free - 4):
        assert open_link(http, "not-a-token-" + "z" * 20).status_code == 404
    throttled = open_link(http, token)  # while the address waits, even the right link is not checked
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0


def test_the_new_password_follows_the_policy_and_a_refusal_keeps_the_link(
    http: TestClient, store: Store
) -> None:
    page = open_link(http, issue_link(store)).text
    for new, again, why in (
        ("short", None, "at least 8 characters"),
        ("password123", None, "too common"),
        ("my anna passphrase", None, "must not contain the username"),
        (NEW, "typo" + NEW, "differ"),
    ):
        refused = choose(http, page, new, again)
        assert refused.status_code == 400 and 'id="reset-form"' in refused.text
        problem = re.search(r'id="new-problem">([^<]*)<', refused.text)
        assert problem is not None and why in problem.group(1), refused.text
        page = refused.text
    assert smart_login_status(http, PASSWORD) == 200
    assert choose(http, page, NEW).status_code == 200
    assert smart_login_status(http, NEW) == 200


def test_a_reset_ends_the_apps_grants_and_every_account_session(http: TestClient, store: Store) -> None:
    issued = tokens(http)
    assert http.get("/Patient/p1", headers=bearer(issued["access_token"])).status_code == 200
    other_browser = app_client(store, http.app.state.settings)  # type: ignore[attr-defined]
    with other_browser:
        elsewhere = sign_in(other_browser, "anna")
        assert elsewhere.status_code == 200
        page = open_link(http, issue_link(store))
        assert choose(http, page.text, NEW).status_code == 200
        refreshed = http.post(
            "/auth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": issued["refresh_token"],
                "client_id": "app",
            },
        )
        assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
        assert http.get("/Patient/p1", headers=bearer(issued["access_token"])).status_code == 401
        assert (
            change_password(other_browser, elsewhere.text, NEW, "yet another passphrase").status_code == 403
        )


def test_a_new_link_replaces_the_open_one(http: TestClient, store: Store) -> None:
    first = issue_link(store)
    second = issue_link(store)
    assert open_link(http, first).status_code == 404
    assert open_link(http, second).status_code == 200


def test_the_form_needs_the_pages_session_and_form_token(http: TestClient, store: Store) -> None:
    token = issue_link(store)
    page = open_link(http, token).text
    stranger = TestClient(http.app, base_url=str(http.base_url), raise_server_exceptions=False)
    form = {"csrf": hidden(page, "csrf"), "token": token, "new": NEW, "new2": NEW}
    assert stranger.post(password_reset.PATH, data=form).status_code == 403  # no cookie
    assert http.post(password_reset.PATH, data={**form, "csrf": "forged"}).status_code == 403
    assert smart_login_status(http, PASSWORD) == 200
    assert choose(http, page, NEW).status_code == 200  # the link was not spent by the refusals
