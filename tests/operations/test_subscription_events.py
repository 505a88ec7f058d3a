"""Subscription/$events: replay of a topic Subscription's recent events (https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/OperationDefinition-backport-subscription-events.html)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests import factories
from tests.conftest import BASE
from tests.subscriptions.receiver import Receiver
from tests.subscriptions.test_topics import http, receiver, settle, status_of, subscribe

__all__ = ["http", "receiver"]  # fixtures


def _numbers(bundle: dict[str, Any]) -> list[str]:
    return [e["event-number"]["valueString"] for e in status_of(bundle)["notification-event"]]


def test_events_replays_what_was_notified_with_the_same_numbers(http: TestClient, receiver: Receiver) -> None:
    sub = subscribe(http, factories.topic_subscription(factories.NEW_RESULT_TOPIC, receiver.url, "patient=A"))
    ids = [
        http.post("/Observation", json=factories.lab_observation("A", value=v)).json()["id"]
        for v in (1, 2, 3)
    ]
    receiver.wait_for(4)  # matched before the delete (a version is matched by the current row)
    http.delete(f"/Observation/{ids[0]}")
    settle(receiver, 5)  # handshake + 4 events
    everything = http.get(f"/Subscription/{sub['id']}/$events")
    assert everything.status_code == 200, everything.text
    body = everything.json()
    assert body["type"] == "history"
    status = status_of(body)
    assert (status["type"], status["events-since-subscription-start"]) == ("query-event", "4")
    assert _numbers(body) == ["1", "2", "3", "4"]
    assert [e.get("resource", {}).get("id") for e in body["entry"][1:]] == [*ids, None]
    some = http.get(
        f"/Subscription/{sub['id']}/$events?eventsSinceNumber=2&eventsUntilNumber=3&content=id-only"
    )
    assert _numbers(some.json()) == ["2", "3"]
    assert [e["fullUrl"] for e in some.json()["entry"][1:]] == [f"{BASE}/Observation/{i}" for i in ids[1:]]
    assert all("resource" not in e for e in some.json()["entry"][1:])
    posted = http.post(
        f"/Subscription/{sub['id']}/$events",
        json={"resourceType": "Parameters", "parameter": [{"name": "eventsSinceNumber", "valueString": "4"}]},
    )
    assert posted.status_code == 200, posted.text
    assert _numbers(posted.json()) == ["4"]


def test_events_bad_input(http: TestClient, receiver: Receiver) -> None:
    sub = subscribe(http, factories.topic_subscription(factories.NEW_RESULT_TOPIC, receiver.url))
    path = f"/Subscription/{sub['id']}/$events"
    for query in (
        "?content=everything",
        "?eventsSinceNumber=x",
        "?eventsUntilNumber=-1",
        "?eventsSinceNumber=0",
        f"?eventsUntilNumber={10**30}",
    ):
        response = http.get(path + query)
        assert response.status_code == 400, (query, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
    assert http.get("/Subscription/nothing/$events").status_code == 404
    criteria = http.post(
        "/Subscription",
        json={
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "r",
            "criteria": "Observation?",
            "channel": {"type": "rest-hook", "endpoint": receiver.url},
        },
    ).json()
    assert http.get(f"/Subscription/{criteria['id']}/$events").status_code == 400
