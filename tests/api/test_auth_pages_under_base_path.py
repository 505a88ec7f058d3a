"""The login, patient picker, consent, account and registration pages work when FHIR_BASE_URL has a path (issue 15).

Headless through the real pages like a browser: every form is posted to the `action` the page gives,
every link followed from its `href`, and cookies go back only under the path they were set for
(httpx's cookie jar applies the path rule). On the old code the actions, links and cookie paths were
at the root (`/auth/...`), so the first form already went outside the base (404) and, even posted at
the right place, the session cookie never came back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.auth import totp
from fhir_server.settings import Settings
from fhir_server.store.sql import Store
from tests.auth.account_flow import DETAILS, cheap_hashes
from tests.auth.smart_flow import PASSWORD, Authorization, add_patient, add_user, bearer, query, register

__all__ = ["cheap_hashes"]  # fixture
BASE = "http://testserver/fhir"
NEW = "a brand new passphrase"


class _Forms(HTMLParser):
    """The forms (action, fields with their values) and links (id -> href) of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: dict[str, tuple[str, list[tuple[str, str]]]] = {}
        self.links: dict[str, str] = {}
        self._current: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._current = a["id"]
            self.forms[a["id"]] = (a["action"], [])
        elif tag == "input" and self._current is not None and a.get("name"):
            kind = a.get("type", "text")
            if kind == "hidden" or (kind in ("checkbox", "radio") and "checked" in a):
                self.forms[self._current][1].append((a["name"], a.get("value", "")))
        elif tag == "a" and a.get("id"):
            self.links[a["id"]] = a["href"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def _parsed(page: httpx.Response) -> _Forms:
    parser = _Forms()
    parser.feed(page.text)
    return parser


def submit(http: TestClient, page: httpx.Response, form_id: str, **typed: str) -> httpx.Response:
    """Post the form `form_id` of `page` to its action, with its hidden/ticked fields and what was typed."""
    action, fields = _parsed(page).forms[form_id]
    url = urljoin(str(page.url), action)
    assert urlsplit(url).path.startswith("/fhir/auth/"), action
    data: dict[str, list[str]] = {}
    for name, value in [(k, v) for k, v in fields if k not in typed] + list(typed.items()):
        data.setdefault(name, []).append(value)
    return http.post(url, data=data)


def follow(http: TestClient, page: httpx.Response, link_id: str) -> httpx.Response:
    href = _parsed(page).links[link_id]
    return http.get(urljoin(str(page.url), href))


def cookie_paths(response: httpx.Response) -> set[str]:
    return {
        part.strip().split("=", 1)[1]
        for header in response.headers.get_list("set-cookie")
        for part in header.split(";")
        if part.strip().lower().startswith("path=")
    }


@pytest.fixture
def http(store: Store, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        base_url=BASE + "/", data_dir=tmp_path, allow_anonymous=False, self_registration="open"
    )
    store = Store(store.engine, base=settings.base)
    register(store)
    add_patient(store, "p1", "Smith", "Anna")
    add_patient(store, "p2", "Jones", "Bob")
    add_user(store, "dr", "Practitioner/dr")
    app = create_app(settings, store=store)
    with TestClient(app, base_url=BASE, raise_server_exceptions=False, follow_redirects=False) as c:
        yield c


def authorization_code_flow(http: TestClient, username: str, password: str) -> dict[str, Any]:
    """Discovery, authorize, login, patient picker, consent, code exchange with PKCE: the token response."""
    config = http.get(f"{BASE}/.well-known/smart-configuration").json()
    request = Authorization(aud=BASE, scope="launch/patient patient/*.rs openid fhirUser offline_access")
    page = http.get(config["authorization_endpoint"], params=request.params())
    assert page.status_code == 200, page.text
    page = submit(http, page, "login-form", username=username, password=password)
    assert page.status_code == 200 and 'id="patient-form"' in page.text, page.text
    assert cookie_paths(page) == {"/fhir/auth"}
    page = submit(http, page, "search-form", q="jones")
    assert page.status_code == 200 and "Jones" in page.text and "Smith" not in page.text, page.text
    page = submit(http, page, "patient-form", action="select", patient="p2")
    assert page.status_code == 200 and 'id="consent-form"' in page.text, page.text
    done = submit(http, page, "consent-form", decision="approve")
    assert done.status_code == 303, done.text
    answer = query(done.headers["location"])
    assert answer["state"] == request.state
    exchanged = http.post(
        config["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": answer["code"],
            "redirect_uri": request.redirect_uri,
            "client_id": request.client_id,
            "code_verifier": request.verifier,
        },
    )
    assert exchanged.status_code == 200, exchanged.text
    body: dict[str, Any] = exchanged.json()
    assert body["patient"] == "p2"
    return body


def test_a_smart_authorization_code_flow_with_pkce_through_the_pages_under_a_base_path(
    http: TestClient,
) -> None:
    tokens = authorization_code_flow(http, "dr", PASSWORD)
    assert http.get(f"{BASE}/Patient/p2", headers=bearer(tokens["access_token"])).status_code == 200
    assert http.get(f"{BASE}/Patient/p1", headers=bearer(tokens["access_token"])).status_code in (403, 404)


def test_the_account_pages_work_under_a_base_path(http: TestClient) -> None:
    config = http.get(f"{BASE}/.well-known/smart-configuration").json()
    login = http.get(config["authorization_endpoint"], params=Authorization(aud=BASE).params())
    page = follow(http, login, "account-link")
    assert page.status_code == 200 and cookie_paths(page) == {"/fhir/auth"}
    page = submit(http, page, "account-login-form", username="dr", password=PASSWORD)
    assert page.status_code == 200 and 'id="change-password"' in page.text, page.text
    page = submit(http, page, "password-form", current=PASSWORD, new=NEW, new2=NEW)
    assert page.status_code == 200 and 'id="notice"' in page.text, page.text
    setup = submit(http, page, "totp-start-form", action="start")
    assert setup.status_code == 200 and 'id="totp-secret"' in setup.text, setup.text
    secret = setup.text.split('id="totp-secret">', 1)[1].split("<", 1)[0].replace(" ", "")
    code = totp.generate(totp.decode_secret(secret), time.time())
    page = submit(http, setup, "totp-confirm-form", action="confirm", code=code)
    assert page.status_code == 200 and 'id="totp-state">on' in page.text, page.text
    out = submit(http, page, "logout-form")
    assert out.status_code == 200 and 'id="account-login-form"' in out.text


def test_registration_works_under_a_base_path(http: TestClient) -> None:
    config = http.get(f"{BASE}/.well-known/smart-configuration").json()
    login = http.get(config["authorization_endpoint"], params=Authorization(aud=BASE).params())
    page = follow(http, login, "register-link")
    assert page.status_code == 200 and cookie_paths(page) == {"/fhir/auth"}
    done = submit(http, page, "register-form", **DETAILS, username="ada", password=NEW, password2=NEW)
    assert done.status_code == 201, done.text
    page = follow(http, done, "manage")
    page = submit(http, page, "account-login-form", username="ada", password=NEW)
    assert page.status_code == 200 and 'id="change-password"' in page.text, page.text
