"""The JavaScript `fhirclient` completes a SMART standalone launch in headless Chromium (https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#launch-app-standalone-launch).

The FHIR server runs in uvicorn on one localhost port; the app (`js_app/launch.html`, `index.html` and
fhirclient's browser bundle, fetched once with `npm pack`) is served from another port, so every call
the app makes (discovery, token, FHIR read) is cross-origin, as for a real SMART app. Selenium drives
Debian's Chromium through Debian's chromedriver, which is built from the same source as the browser.
"""

from __future__ import annotations

import functools
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from fhir_server import spec_package
from fhir_server.store.sql import Store
from tests.auth.smart_flow import PASSWORD, add_patient, add_user, register
from tests.live_server import smart_server

FHIRCLIENT_VERSION = "2.6.3"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
APP_PAGES = Path(__file__).with_name("js_app")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1000,700",
]


def fhirclient_bundle() -> Path:
    """fhirclient's browser build (global `FHIR`), from the npm package cached under XDG_CACHE_HOME."""
    package = spec_package.fetch_npm(
        "fhirclient", FHIRCLIENT_VERSION, spec_package.npm_cache_dir("fhirclient", FHIRCLIENT_VERSION)
    )
    return package / "build" / "fhir-client.js"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def live_server(store: Store, smart_data_dir: Path) -> Iterator[str]:
    """The FHIR server on 127.0.0.1:<free port>; yields its base URL."""
    with smart_server(store, smart_data_dir) as base:
        yield base


@pytest.fixture
def app_origin(tmp_path: Path) -> Iterator[str]:
    """The app's pages and fhir-client.js served by the test on another port; yields that origin."""
    site = tmp_path / "site"
    shutil.copytree(APP_PAGES, site)
    shutil.copy(fhirclient_bundle(), site / "fhir-client.js")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=30)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """Headless Chromium with a fresh profile, driven by chromedriver."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(
            f"{CHROMIUM} and {CHROMEDRIVER} are needed: run .ci/run "
            "(it installs the Debian packages chromium and chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _wait_for_one_of(driver: WebDriver, *ids: str) -> str:
    """Wait until an element with one of the ids is on the page; return that id."""

    def present(d: WebDriver) -> str | bool:
        return next((i for i in ids if d.find_elements(By.ID, i)), False)

    try:
        return str(WebDriverWait(driver, 30).until(present))
    except TimeoutException:
        raise AssertionError(f"none of {ids} at {driver.current_url}:\n{driver.page_source}") from None


@pytest.mark.slow
def test_js_fhirclient_standalone_launch_shows_the_patients_name(
    live_server: str, app_origin: str, browser: WebDriver, store: Store, tmp_path: Path
) -> None:
    """A public browser app logs a patient in, gets consent and reads the Patient cross-origin (@53, @355)."""
    register(store, "js-app", redirect_uris=[f"{app_origin}/index.html"], name="fhirclient.js")
    add_patient(store, "p1", "Chalmers", "Peter")
    add_user(store, "peter", "Patient/p1")

    browser.get(f"{app_origin}/launch.html?fhir={quote(live_server, safe='')}")
    assert _wait_for_one_of(browser, "username") == "username"
    assert browser.current_url.startswith(f"{live_server}/auth/authorize?")
    browser.find_element(By.ID, "username").send_keys("peter")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login").click()
    if _wait_for_one_of(browser, "approve", "select-patient") == "select-patient":
        browser.find_element(By.CSS_SELECTOR, 'input[name="patient"][value="p1"]').click()
        browser.find_element(By.ID, "select-patient").click()
        _wait_for_one_of(browser, "approve")
    browser.find_element(By.ID, "approve").click()

    def shown(d: WebDriver) -> str | bool:
        text = d.find_element(By.ID, "patient-name").text + d.find_element(By.ID, "error").text
        return text if d.current_url.startswith(app_origin) and text != "loading..." else False

    try:
        WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.ID, "patient-name") and shown(d))
    except TimeoutException:
        raise AssertionError(
            f"the app did not finish at {browser.current_url}:\n{browser.page_source}"
        ) from None
    screenshot = tmp_path / "js-fhirclient-standalone-launch.png"
    browser.save_screenshot(str(screenshot))
    print(f"screenshot: {screenshot}")
    assert browser.find_element(By.ID, "error").text == ""
    assert browser.find_element(By.ID, "patient-name").text == "Peter Chalmers"
    assert browser.find_element(By.ID, "patient-id").text == "p1"
    assert "patient/" in browser.find_element(By.ID, "scope").text
    assert browser.current_url.startswith(f"{app_origin}/index.html")
