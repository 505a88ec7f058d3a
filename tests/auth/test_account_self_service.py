"""A user changes their password and sets up TOTP themselves, through the real account pages (fhir_server/auth/account.py).

Headless, like tests/auth/test_caregiver_login.py: each page is fetched, its form token read, and
the form posted with the session cookie the page set.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from fhir_server.auth import qr_code, totp, users
from fhir_server.auth.login_throttle import PAIR
from fhir_server.store.sql import Store
from tests.auth.account_flow import (
    app_client,
    change_password,
    cheap_hashes,
    confirm_totp,
    sign_in,
    start_totp,
)
from tests.auth.smart_flow import (
    PASSWORD,
    Authorization,
    add_patient,
    add_user,
    authorize,
    bearer,
    exchange,
    hidden,
    log_in,
    register,
)

__all__ = ["cheap_hashes"]  # fixture
NEW = "a brand new passphrase"


@pytest.fixture
def http(store: Store, smart_client: TestClient) -> Iterator[TestClient]:
    """The SMART server with app `app`, and patient user `anna` (Patient/p1)."""
    register(store)
    add_patient(store, "p1")
    add_user(store, "anna", "Patient/p1")
    yield smart_client


def tokens(http: TestClient, username: str = "anna") -> dict[str, str]:
    request = Authorization()
    answer = exchange(http, request, authorize(http, request, username)["code"])
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def smart_login_status(http: TestClient, password: str, code: str = "") -> int:
    page = http.get(Authorization().url())
    return int(log_in(http, page.text, "anna", password, code).status_code)


def test_signing_in_to_the_account_page_needs_the_password_and_is_throttled_with_the_login_page(
    http: TestClient,
) -> None:
    assert sign_in(http, "anna", "wrong password").status_code == 401
    assert sign_in(http, "nobody", PASSWORD).status_code == 401
    for _ in range(PAIR.free - 1):  # the SMART login page and the account page count together
        assert smart_login_status(http, "wrong password") == 401
    throttled = sign_in(http, "anna", PASSWORD)
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0


def test_a_password_change_needs_the_current_password_and_a_good_new_one(http: TestClient) -> None:
    page = sign_in(http, "anna")
    assert page.status_code == 200 and 'id="change-password"' in page.text
    assert change_password(http, page.text, "wrong password", NEW).status_code == 401
    assert change_password(http, page.text, PASSWORD, "short").status_code == 400
    assert change_password(http, page.text, PASSWORD, NEW, "something else").status_code == 400
    assert change_password(http, page.text, PASSWORD, PASSWORD).status_code == 400
    assert smart_login_status(http, PASSWORD) == 200  # unchanged so far
    done = change_password(http, page.text, PASSWORD, NEW)
    assert done.status_code == 200 and 'id="notice"' in done.text
    assert NEW not in done.text and PASSWORD not in done.text
    assert smart_login_status(http, PASSWORD) == 401
    assert smart_login_status(http, NEW) == 200


def test_a_password_change_ends_the_apps_grants_and_the_other_sessions(
    http: TestClient, store: Store
) -> None:
    issued = tokens(http)
    assert http.get("/Patient/p1", headers=bearer(issued["access_token"])).status_code == 200
    other_browser = app_client(store, http.app.state.settings)  # type: ignore[attr-defined]
    with other_browser:
        elsewhere = sign_in(other_browser, "anna")
        page = sign_in(http, "anna")
        assert change_password(http, page.text, PASSWORD, NEW).status_code == 200
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
    assert smart_login_status(http, NEW) == 200


def test_the_changes_need_a_signed_in_session_and_its_form_token(http: TestClient) -> None:
    anonymous = http.get("/auth/account")
    token = hidden(anonymous.text, "csrf")
    form = {"csrf": token, "current": PASSWORD, "new": NEW, "new2": NEW}
    assert http.post("/auth/account/password", data=form).status_code == 403  # not signed in
    page = sign_in(http, "anna")
    assert http.post("/auth/account/password", data={**form, "csrf": token}).status_code == 403  # old token
    page = sign_in(http, "anna")
    assert http.post("/auth/account/totp", data={"action": "start"}).status_code == 403  # no token
    page = sign_in(http, "anna")
    stranger = TestClient(http.app, base_url=str(http.base_url), raise_server_exceptions=False)
    stolen = {"csrf": hidden(page.text, "csrf"), "action": "start"}
    assert stranger.post("/auth/account/totp", data=stolen).status_code == 403  # no cookie
    assert smart_login_status(http, PASSWORD) == 200


def test_totp_is_required_only_once_a_code_confirmed_it(http: TestClient, store: Store) -> None:
    page = sign_in(http, "anna")
    assert 'id="totp-state">off' in page.text
    setup = start_totp(http, page.text)
    assert setup.status_code == 200
    uri = hidden_text(setup.text, "totp-uri")
    assert uri.startswith("otpauth://totp/fhir-server:anna?secret=")
    secret = hidden_text(setup.text, "totp-secret").replace(" ", "")
    assert smart_login_status(http, PASSWORD) == 200  # not required before it is confirmed
    key = totp.decode_secret(secret)
    near = {totp.generate(key, time.time() + d * totp.STEP) for d in (-1, 0, 1, 2)}
    wrong = confirm_totp(
        http, setup.text, next(c for c in ("000000", "111111", "222222", "333333", "444444") if c not in near)
    )
    assert wrong.status_code == 400 and 'id="totp-confirm"' in wrong.text
    with store.read() as tx:
        user = users.get_by_username(tx.conn, "anna")
    assert user is not None and user.totp_secret is None
    code = totp.generate(key, time.time())
    done = confirm_totp(http, setup.text, code)
    assert done.status_code == 200 and 'id="totp-state">on' in done.text
    assert smart_login_status(http, PASSWORD) == 401  # a code is needed now
    assert smart_login_status(http, PASSWORD, code) == 401  # the confirming code is spent
    following = totp.generate(key, time.time() + totp.STEP)
    assert smart_login_status(http, PASSWORD, following) == 200


def test_signing_out_ends_the_session(http: TestClient) -> None:
    page = sign_in(http, "anna")
    out = http.post("/auth/account/logout", data={"csrf": hidden(page.text, "csrf")})
    assert out.status_code == 200 and 'id="account-login"' in out.text
    assert change_password(http, page.text, PASSWORD, NEW).status_code == 403


def hidden_text(page: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', page)
    assert match, element_id
    return html.unescape(match.group(1))


def test_the_totp_set_up_page_shows_the_key_uri_as_an_inline_svg_qr_code(http: TestClient) -> None:
    setup = start_totp(http, sign_in(http, "anna").text)
    assert setup.status_code == 200
    href = re.search(r'<a href="([^"]*)" id="totp-uri"', setup.text)
    assert href is not None
    uri = html.unescape(href.group(1))
    assert uri == hidden_text(setup.text, "totp-uri")
    assert uri.startswith("otpauth://totp/fhir-server:anna?secret=")
    secret = hidden_text(setup.text, "totp-secret").replace(" ", "")
    assert f"secret={secret}&" in uri
    figure = re.search(r'<div id="totp-qr" role="img" aria-label="[^"]+">(<svg .*?</svg>)</div>', setup.text)
    assert figure is not None, setup.text
    assert figure.group(1) == qr_code.svg(uri)  # the symbol of this page's own URI, drawn inline
    assert "<img" not in setup.text and "<?xml" not in setup.text
