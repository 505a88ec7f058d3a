"""The Python `fhirclient` completes a SMART standalone launch against a real server (https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#launch-app-standalone-launch).

A uvicorn server on a free localhost port in a background thread; `requests` plays the browser
(login and consent forms); the app's redirect is captured, never fetched, so no network is needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from fhirclient import client as fhirclient

from fhir_server.store.sql import Store
from tests.auth.smart_flow import REDIRECT, add_patient, add_user, hidden, offered_scopes, register
from tests.live_server import smart_server


@pytest.fixture
def live_server(store: Store, smart_data_dir: Path) -> Iterator[str]:
    """The app served by uvicorn on 127.0.0.1:<free port>; yields the FHIR base URL."""
    with smart_server(store, smart_data_dir) as base:
        yield base


def test_fhirclient_launches_reads_the_patient_and_refreshes_its_token(
    live_server: str, store: Store
) -> None:
    register(store, "py-app", redirect_uris=[REDIRECT], name="Python fhirclient")
    add_patient(store, "p1", "Chalmers", "Peter")
    add_user(store, "peter", "Patient/p1")
    smart = fhirclient.FHIRClient(
        settings={
            "app_id": "py-app",
            "api_base": live_server,
            "redirect_uri": REDIRECT,
            "scope": "launch/patient patient/*.rs openid fhirUser offline_access",
        }
    )
    browser = requests.Session()
    login_page = browser.get(smart.authorize_url, timeout=30)
    assert login_page.status_code == 200, login_page.text
    consent_page = browser.post(
        f"{live_server}/auth/login",
        data={
            "request": hidden(login_page.text, "request"),
            "username": "peter",
            "password": "correct horse battery staple",
        },
        timeout=30,
    )
    assert consent_page.status_code == 200, consent_page.text
    approved = browser.post(
        f"{live_server}/auth/consent",
        data={
            "request": hidden(consent_page.text, "request"),
            "decision": "approve",
            "scope": offered_scopes(consent_page.text),
        },
        allow_redirects=False,
        timeout=30,
    )
    assert approved.status_code == 303
    callback = approved.headers["Location"]
    assert callback.startswith(REDIRECT)

    smart.handle_callback(callback)
    assert smart.ready and smart.patient_id == "p1"
    patient = smart.patient
    assert patient is not None and patient.name[0].family == "Chalmers"
    first_token = smart.server.auth.access_token

    assert smart.reauthorize() is not None
    assert smart.server.auth.access_token != first_token
    smart.reset_patient()
    smart.patient_id = "p1"
    assert smart.patient is not None and smart.patient.id == "p1"
    gone = requests.get(f"{live_server}/Patient/p1", headers={"Authorization": "Bearer nope"}, timeout=30)
    assert gone.status_code == 401
