"""The Python `fhirclient` completes a SMART standalone launch against a real server (https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#launch-app-standalone-launch).

A uvicorn server on a free localhost port in a background thread; `requests` plays the browser
(login and consent forms); the app's redirect is captured, never fetched, so no network is needed.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import uvicorn
from fhirclient import client as fhirclient

from fhir_server.app import create_app
from fhir_server.settings import Settings
from fhir_server.store.sql import Store
from tests.auth.smart_flow import REDIRECT, add_patient, add_user, hidden, offered_scopes, register


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def live_server(store: Store, smart_data_dir: Path) -> Iterator[str]:
    """The app served by uvicorn on 127.0.0.1:<free port>; yields the FHIR base URL."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app(Settings(base_url=base, data_dir=smart_data_dir, allow_anonymous=False), store=store)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield base
    server.should_exit = True
    thread.join(timeout=30)


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
