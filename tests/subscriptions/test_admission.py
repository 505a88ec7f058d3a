"""A Subscription is checked when written: bad input is a 400 OperationOutcome at the element (https://hl7.org/fhir/R4/subscription.html)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.store.sql import Store
from tests.conftest import BASE
from tests.subscriptions.test_rest_hook import settings, subscription

HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture
def http(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(settings(), store=store), base_url=BASE, raise_server_exceptions=False) as c:
        yield c


def _refused(http: TestClient, body: dict[str, Any], expression: str, status: int = 400) -> str:
    before = http.get("/Subscription").json().get("total", 0)
    response = http.post("/Subscription", json=body)
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert expression in outcome["issue"][0].get("expression", []), outcome
    assert http.get("/Subscription").json().get("total", 0) == before  # nothing was stored
    return str(outcome["issue"][0]["diagnostics"])


@pytest.mark.parametrize(
    "criteria",
    [
        "Observation?nonsense=1",  # unknown parameter
        "Observation?birthdate=2000",  # another type's parameter
        "Observation?code:fuzzy=1",  # unknown modifier
        "Observation?_sort=date",  # a result parameter
        "NoSuchType?code=1",
        "",
        "http://example.org/topic/admission",  # a topic canonical this server does not know
        "AuditEvent?action=R",  # recorded without change events (docs/audit.md)
    ],
)
def test_a_criteria_that_is_no_valid_search_is_refused(http: TestClient, criteria: str) -> None:
    _refused(http, subscription(criteria, HOOK), "Subscription.criteria")


@pytest.mark.parametrize(
    "endpoint", ["ftp://example.org/x", "file:///etc/passwd", "not a url", "mailto:a@b.c"]
)
def test_an_endpoint_that_is_not_http_is_refused(http: TestClient, endpoint: str) -> None:
    _refused(http, subscription("Patient?", endpoint), "Subscription.channel.endpoint")


def test_loopback_and_private_endpoints_follow_the_policy(store: Store) -> None:
    strict = create_app(settings(subscription_allow_loopback=False), store=store)
    with TestClient(strict, base_url=BASE, raise_server_exceptions=False) as http:
        for url in ("http://127.0.0.1/x", "http://localhost:8080/x", "http://10.1.2.3/x", "http://[::1]/x"):
            text = _refused(http, subscription("Patient?", url), "Subscription.channel.endpoint")
            assert "address" in text
    private = create_app(
        settings(subscription_allow_loopback=False, subscription_allow_private=True), store=store
    )
    with TestClient(private, base_url=BASE, raise_server_exceptions=False) as http:
        assert (
            http.post("/Subscription", json=subscription("Patient?", "http://10.1.2.3/x")).status_code == 201
        )
        _refused(http, subscription("Patient?", "http://127.0.0.1/x"), "Subscription.channel.endpoint")


@pytest.mark.parametrize("channel_type", ["email", "sms", "message", "carrier-pigeon"])
def test_an_unsupported_channel_is_refused(http: TestClient, channel_type: str) -> None:
    body = subscription("Patient?", HOOK)
    body["channel"]["type"] = channel_type
    response = http.post("/Subscription", json=body)
    assert response.status_code == 400, response.text


def test_an_unsupported_payload_or_a_bad_header_is_refused(http: TestClient) -> None:
    _refused(
        http, subscription("Patient?", HOOK, payload="application/fhir+xml"), "Subscription.channel.payload"
    )
    _refused(http, subscription("Patient?", HOOK, header=["no colon here"]), "Subscription.channel.header[0]")


@pytest.mark.parametrize("status", ["active", "error"])
def test_a_client_may_not_set_the_status(http: TestClient, status: str) -> None:
    _refused(http, {**subscription("Patient?", HOOK), "status": status}, "Subscription.status")


def test_an_update_keeps_the_server_owned_status_and_a_patch_is_refused(http: TestClient) -> None:
    sub = http.post("/Subscription", json=subscription("Patient?", HOOK)).json()
    assert sub["status"] == "active"
    again = http.put(f"/Subscription/{sub['id']}", json={**sub, "reason": "changed"})
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "active"
    off = http.put(f"/Subscription/{sub['id']}", json={**sub, "status": "off"})
    assert off.json()["status"] == "off"
    assert http.put(f"/Subscription/{sub['id']}", json={**sub, "status": "active"}).status_code == 400
    patch = [{"op": "replace", "path": "/status", "value": "active"}]
    response = http.patch(
        f"/Subscription/{sub['id']}", json=patch, headers={"Content-Type": "application/json-patch+json"}
    )
    assert response.status_code == 400, response.text
    assert http.get(f"/Subscription/{sub['id']}").json()["status"] == "off"
    conditional = http.put("/Subscription?reason=test", json={**sub, "status": "requested"})
    assert conditional.status_code == 400


def test_the_capability_statement_says_what_subscriptions_do(http: TestClient) -> None:
    resources = http.get("/metadata").json()["rest"][0]["resource"]
    text = next(r for r in resources if r["type"] == "Subscription")["documentation"]
    assert "rest-hook" in text and "websocket" in text and "Server-Sent Events" in text
