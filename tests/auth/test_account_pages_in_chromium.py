"""A person registers, signs in to their account, changes the password and turns on TOTP in headless Chromium (docs/smart-on-fhir.md "Accounts"), at the root and under a base URL with a path.

The server runs in uvicorn on a localhost port, so the session cookie (HttpOnly, SameSite=Strict)
and the form tokens go through a real browser's rules. Nothing is typed but what a person would.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from fhir_server.app import create_app
from fhir_server.auth import totp, users
from fhir_server.auth.login import LoginAttempt, log_in
from fhir_server.settings import Settings
from fhir_server.store.sql import Store
from tests.auth.account_flow import cheap_hashes
from tests.auth.test_js_fhirclient_launch import _wait_for_one_of, browser
from tests.live_server import free_port, serving

__all__ = ["browser", "cheap_hashes"]  # fixtures
FIRST = "my first passphrase"
SECOND = "my second passphrase"


@pytest.fixture(params=["", "/fhir"], ids=["at-root", "under-a-path"])
def live_server(store: Store, smart_data_dir: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The server in uvicorn, at the root or under a base URL with a path (issue 15)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}{request.param}"
    settings = Settings(
        base_url=base, data_dir=smart_data_dir, allow_anonymous=False, self_registration="open"
    )
    with serving(create_app(settings, store=Store(store.engine, base=settings.base)), port):
        yield base


def fill(driver: WebDriver, **fields: str) -> None:
    for name, value in fields.items():
        element = driver.find_element(By.ID, name)
        element.clear()
        element.send_keys(value)


def submit(driver: WebDriver, button: str) -> None:
    """Click a form's button and wait until the page it was on is gone: the answer page is looked at
    only then (the form page may carry an id the wait looks for, e.g. its own `error` banner). A mark
    set on the old page's window is gone in the new document's."""
    driver.execute_script("window.__submitted = true")
    driver.find_element(By.ID, button).click()

    def gone(d: WebDriver) -> bool:
        try:
            return bool(d.execute_script("return window.__submitted === undefined"))
        except WebDriverException:  # the page is between documents
            return False

    WebDriverWait(driver, 30).until(gone)


@pytest.mark.slow
def test_register_change_the_password_and_turn_on_totp_in_a_browser(
    live_server: str, browser: WebDriver, store: Store
) -> None:
    browser.get(f"{live_server}/auth/register")
    _wait_for_one_of(browser, "register")
    fill(browser, given="Mary", family="Seacole", username="mary", password=FIRST, password2="typo" + FIRST)
    submit(browser, "register")
    assert _wait_for_one_of(browser, "password2-problem", "done") == "password2-problem"
    assert browser.find_element(By.ID, "username").get_attribute("value") == "mary"  # kept, the passwords not
    assert browser.find_element(By.ID, "password").get_attribute("value") == ""
    fill(browser, password=FIRST, password2=FIRST)
    submit(browser, "register")
    assert _wait_for_one_of(browser, "done", "error") == "done", browser.page_source

    browser.find_element(By.ID, "manage").click()
    _wait_for_one_of(browser, "account-login")
    fill(browser, username="mary", password=FIRST)
    submit(browser, "account-login")
    assert _wait_for_one_of(browser, "change-password", "error") == "change-password", browser.page_source
    fill(browser, current=FIRST, new=SECOND, new2=SECOND)
    submit(browser, "change-password")
    assert _wait_for_one_of(browser, "notice", "error") == "notice", browser.page_source

    browser.find_element(By.ID, "totp-start").click()
    _wait_for_one_of(browser, "totp-secret")
    key = totp.decode_secret(browser.find_element(By.ID, "totp-secret").text.replace(" ", ""))
    assert browser.find_element(By.ID, "totp-uri").get_attribute("href").startswith("otpauth://totp/")
    qr = browser.find_element(By.CSS_SELECTOR, "#totp-qr svg")  # the QR code, drawn inline
    assert qr.is_displayed() and qr.size["width"] > 80
    fill(browser, code=totp.generate(key, time.time()))
    submit(browser, "totp-confirm")
    assert _wait_for_one_of(browser, "notice", "error") == "notice", browser.page_source
    assert browser.find_element(By.ID, "totp-state").text == "on"

    with store.read() as tx:
        user = users.get_by_username(tx.conn, "mary")
    assert user is not None and user.fhir_user is not None and user.totp_secret is not None
    following = totp.generate(key, time.time() + totp.STEP)
    assert log_in(store, LoginAttempt("mary", SECOND, following)).username == "mary"
