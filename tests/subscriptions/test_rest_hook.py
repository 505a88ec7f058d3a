"""R4 criteria Subscriptions delivered over rest-hook to a real HTTP receiver (https://hl7.org/fhir/R4/subscription.html)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.settings import Settings
from fhir_server.store.sql import Store
from tests import factories
from tests.conftest import BASE
from tests.subscriptions.receiver import Receiver

HEART = "8867-4"


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "base_url": BASE,
        "allow_anonymous": True,
        "max_body_bytes": 1_000_000,
        "subscription_allow_loopback": True,
        "subscription_retry_base_seconds": 0.05,
        "subscription_retry_max_seconds": 0.4,
        "subscription_max_failures": 3,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def http(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(settings(), store=store), base_url=BASE, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def subscription(criteria: str, endpoint: str, **channel: Any) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "test",
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": endpoint, **channel},
    }


def subscribe(http: TestClient, criteria: str, endpoint: str, **channel: Any) -> dict[str, Any]:
    response = http.post("/Subscription", json=subscription(criteria, endpoint, **channel))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_create_update_delete_each_notify_in_order_with_the_resource(
    http: TestClient, receiver: Receiver
) -> None:
    sub = subscribe(
        http,
        f"Observation?code=http://loinc.org|{HEART}",
        receiver.url,
        payload="application/fhir+json",
        header=["Authorization: Bearer secret-abc"],
    )
    assert sub["status"] == "active"
    assert http.get(f"/Subscription/{sub['id']}").json()["status"] == "active"
    obs = http.post("/Observation", json=factories.observation(None, value=70)).json()
    other = factories.observation(None, value=70)
    other["code"]["coding"][0]["code"] = "9279-1"
    http.post("/Observation", json=other)  # another code: not notified
    http.put(
        f"/Observation/{obs['id']}", json={**obs, "valueQuantity": {**obs["valueQuantity"], "value": 80}}
    )
    http.delete(f"/Observation/{obs['id']}")
    got = receiver.wait_for(3)
    time.sleep(0.3)
    assert len(receiver.received) == 3
    assert [(r.method, r.path, r.event) for r in got] == [
        ("PUT", f"/hook/Observation/{obs['id']}", 1),
        ("PUT", f"/hook/Observation/{obs['id']}", 2),
        ("DELETE", f"/hook/Observation/{obs['id']}", 3),
    ]
    assert all(r.headers["authorization"] == "Bearer secret-abc" for r in got)
    assert orjson.loads(got[0].body)["meta"]["versionId"] == "1"
    assert orjson.loads(got[1].body)["valueQuantity"]["value"] == 80


def test_without_payload_the_notification_is_an_empty_post(http: TestClient, receiver: Receiver) -> None:
    subscribe(http, "Patient?family=Smith", receiver.url)
    http.post("/Patient", json=factories.patient("Jones"))
    pid = http.post("/Patient", json=factories.patient("Smith")).json()["id"]
    got = receiver.wait_for(1)
    time.sleep(0.2)
    assert [(r.method, r.path, r.body) for r in receiver.received] == [("POST", "/hook", b"")]
    assert got[0].headers["x-subscription-event"] == "1"
    assert pid


def test_receiver_down_then_up_gets_every_event_in_order_and_the_status_recovers(
    http: TestClient, receiver: Receiver
) -> None:
    sub = subscribe(http, "Patient?", receiver.url, payload="application/fhir+json")
    receiver.stop()
    ids = [http.post("/Patient", json=factories.patient(f"P{n}")).json()["id"] for n in range(6)]
    deadline = time.monotonic() + 20
    while http.get(f"/Subscription/{sub['id']}").json()["status"] != "error":
        assert time.monotonic() < deadline, "the Subscription never went to error"
        time.sleep(0.05)
    assert "failed" in http.get(f"/Subscription/{sub['id']}").json()["error"]
    receiver.start()
    got = receiver.wait_for(6)
    assert [r.event for r in got] == [1, 2, 3, 4, 5, 6]
    assert [r.path.rsplit("/", 1)[1] for r in got] == ids
    deadline = time.monotonic() + 10
    while (now := http.get(f"/Subscription/{sub['id']}").json())["status"] != "active":
        assert time.monotonic() < deadline, "the Subscription did not recover"
        time.sleep(0.05)
    assert "error" not in now


def test_transaction_bundle_entries_notify_like_single_writes(http: TestClient, receiver: Receiver) -> None:
    subscribe(http, "Observation?", receiver.url, payload="application/fhir+json")
    bundle = factories.transaction(
        factories.post_entry(factories.observation(None, value=1)),
        factories.post_entry(factories.observation(None, value=2)),
    )
    assert http.post("/", json=bundle).status_code == 200
    got = receiver.wait_for(2)
    assert [orjson.loads(r.body)["valueQuantity"]["value"] for r in got] == [1, 2]


def test_an_off_subscription_notifies_nothing(http: TestClient, receiver: Receiver) -> None:
    sub = http.post("/Subscription", json={**subscription("Patient?", receiver.url), "status": "off"}).json()
    assert sub["status"] == "off"
    http.post("/Patient", json=factories.patient())
    time.sleep(0.5)
    assert receiver.received == []


def test_sent_notifications_are_forgotten_after_the_keeping_time_and_pending_ones_stay(
    store: Store, receiver: Receiver
) -> None:
    from sqlalchemy import func, select

    from fhir_server.subscriptions import tables
    from fhir_server.subscriptions.delivery import Deliverer

    app = create_app(settings(), store=store)
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as http:
        subscribe(http, "Patient?", receiver.url)
        http.post("/Patient", json=factories.patient())
        receiver.wait_for(1)
        receiver.stop()
        http.post("/Patient", json=factories.patient())  # stays pending: the receiver is down
        D = tables.subscription_delivery

        def states() -> list[str]:
            with store.read() as tx:
                return sorted(tx.conn.execute(select(D.c.state)).scalars())

        deadline = time.monotonic() + 10
        while states() != ["pending", "sent"]:
            assert time.monotonic() < deadline, states()
            time.sleep(0.05)
        keeping = Deliverer(store, settings(subscription_keep_seconds=3600))
        assert keeping.forget_sent() == 0
        assert Deliverer(store, settings(subscription_keep_seconds=0)).forget_sent() == 1
        with store.read() as tx:
            assert tx.conn.execute(select(func.count()).select_from(D)).scalar() == 1
        assert states() == ["pending"]


def test_events_written_before_the_subscription_existed_are_not_its_own(
    store: Store, receiver: Receiver
) -> None:
    from fhir_server.interactions import create
    from fhir_server.interactions.context import Context

    with store.write() as tx:  # in the outbox, no dispatcher has run yet: a backlog
        for n in range(3):
            tx.create(factories.patient(f"Old{n}"), f"old{n}")
    time.sleep(0.01)
    ctx = Context(store, settings())
    ctx.transact(lambda tx: create.create(ctx, tx, "Subscription", subscription("Patient?", receiver.url)))
    with TestClient(
        create_app(settings(), store=store), base_url=BASE, raise_server_exceptions=False
    ) as http:
        new = http.post("/Patient", json=factories.patient("New")).json()["id"]
        got = receiver.wait_for(1)
        time.sleep(0.5)
    assert len(receiver.received) == 1 and got[0].event == 1
    assert new
