"""Subscription/$status (https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/OperationDefinition-backport-subscription-status.html)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests import factories
from tests.subscriptions.receiver import Receiver
from tests.subscriptions.test_topics import http, receiver, settle, subscribe

__all__ = ["http", "receiver"]  # fixtures


def _params(resource: dict) -> dict:  # type: ignore[type-arg]
    return {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in resource["parameter"]}


def test_status_of_one_and_of_all(http: TestClient, receiver: Receiver) -> None:
    sub = subscribe(http, factories.topic_subscription(factories.NEW_RESULT_TOPIC, receiver.url))
    other = subscribe(http, factories.topic_subscription(factories.EMERGENCY_TOPIC, receiver.url))
    http.post("/Observation", json=factories.lab_observation("A"))
    settle(receiver, 3)  # two handshakes, one event
    one = http.get(f"/Subscription/{sub['id']}/$status")
    assert one.status_code == 200, one.text
    assert one.json()["type"] == "searchset"
    (entry,) = one.json()["entry"]
    params = _params(entry["resource"])
    assert params["type"] == "query-status" and params["status"] == "active"
    assert params["topic"] == factories.NEW_RESULT_TOPIC
    assert params["events-since-subscription-start"] == "1"
    every = http.get("/Subscription/$status").json()
    assert sorted(
        _params(e["resource"])["subscription"]["reference"].rsplit("/", 1)[1] for e in every["entry"]
    ) == sorted([sub["id"], other["id"]])
    named = http.get(f"/Subscription/$status?id={other['id']}").json()
    assert [_params(e["resource"])["events-since-subscription-start"] for e in named["entry"]] == ["0"]
    assert http.get("/Subscription/$status?status=error").json().get("entry") is None
    by_reference = http.post(
        "/Subscription/$status",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "id", "valueReference": {"reference": f"Subscription/{sub['id']}"}}],
        },
    )
    assert by_reference.status_code == 200, by_reference.text
    assert len(by_reference.json()["entry"]) == 1
    assert http.get("/Subscription/nothing/$status").status_code == 404
