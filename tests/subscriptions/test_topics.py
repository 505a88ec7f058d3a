"""Topic-based Subscriptions (Subscriptions R5 Backport IG) over rest-hook to a real HTTP receiver, with the shipped topics (https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.store.sql import Store
from tests import factories
from tests.conftest import BASE
from tests.subscriptions.receiver import Received, Receiver, wait
from tests.subscriptions.test_rest_hook import settings

PROFILE = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"


@pytest.fixture
def http(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(settings(), store=store), base_url=BASE, raise_server_exceptions=False) as c:
        for pid in ("A", "B"):
            assert c.put(f"/Patient/{pid}", json={**factories.patient(pid), "id": pid}).status_code == 201
        yield c


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def subscribe(http: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = http.post("/Subscription", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def status_of(bundle: dict[str, Any]) -> dict[str, Any]:
    """The SubscriptionStatus parameters of a notification Bundle, by name (notification-event: a list)."""
    params = bundle["entry"][0]["resource"]
    assert params["resourceType"] == "Parameters" and params["meta"]["profile"] == [PROFILE]
    out: dict[str, Any] = {"notification-event": []}
    for p in params["parameter"]:
        if p["name"] == "notification-event":
            out["notification-event"].append({part["name"]: part for part in p["part"]})
        else:
            out[p["name"]] = next(v for k, v in p.items() if k.startswith("value"))
    return out


def bundles(received: list[Received]) -> list[dict[str, Any]]:
    out = []
    for r in received:
        assert (r.method, r.path, r.headers["content-type"]) == ("POST", "/hook", "application/fhir+json")
        body = orjson.loads(r.body)
        assert body["resourceType"] == "Bundle" and body["type"] == "history"
        out.append(body)
    return out


def summary(received: list[Received]) -> list[tuple[Any, ...]]:
    """(event, type, focus of each event) of each notification, for a failure's message."""
    out: list[tuple[Any, ...]] = []
    for r in received:
        status = status_of(orjson.loads(r.body))
        focus = [e.get("focus", {}).get("valueReference") for e in status["notification-event"]]
        out.append((r.event, status["type"], focus))
    return out


def settle(receiver: Receiver, count: int) -> list[dict[str, Any]]:
    """The first `count` notifications, once nothing more arrived for a moment (no extra ones)."""
    try:
        receiver.wait_for(count, timeout=float(os.environ.get("TOPIC_WAIT", "60")))
    except AssertionError:
        raise AssertionError(f"received: {summary(receiver.received)}") from None
    time.sleep(0.5)
    assert len(receiver.received) == count, [orjson.loads(r.body) for r in receiver.received]
    return bundles(receiver.received)


def test_new_result_topic_handshake_then_create_update_delete_with_gap_free_numbers(
    http: TestClient, receiver: Receiver
) -> None:
    sub = subscribe(
        http, factories.topic_subscription(factories.NEW_RESULT_TOPIC, receiver.url, "patient=Patient/A")
    )
    assert sub["status"] == "requested"  # until the handshake is answered
    lab = http.post("/Observation", json=factories.lab_observation("A")).json()
    vital = http.post("/Observation", json=factories.observation("A")).json()  # vital signs: not a result
    assert http.post("/Observation", json=factories.lab_observation("B")).status_code == 201  # patient B
    # each arrival awaited: a version is matched by the resource's current row, so a create and
    # delete matched in one batch (the listener lagging) would give nothing (docs/subscriptions.md)
    receiver.wait_for(2)
    changed = {**lab, "valueQuantity": {**lab["valueQuantity"], "value": 6.1}}
    assert http.put(f"/Observation/{lab['id']}", json=changed).status_code == 200
    receiver.wait_for(3)
    assert http.delete(f"/Observation/{lab['id']}").status_code in (200, 204)
    created = http.post("/DiagnosticReport", json=factories.lab_report("A", vital["id"]))
    assert created.status_code == 201, created.text
    report = created.json()
    got = settle(receiver, 5)
    statuses = [status_of(b) for b in got]
    assert [s["type"] for s in statuses] == ["handshake", *["event-notification"] * 4]
    assert [s["events-since-subscription-start"] for s in statuses] == ["0", "1", "2", "3", "4"]
    assert [r.event for r in receiver.received] == [0, 1, 2, 3, 4]
    assert all(s["topic"] == factories.NEW_RESULT_TOPIC for s in statuses)
    assert statuses[1]["subscription"]["reference"] == f"{BASE}/Subscription/{sub['id']}"
    events = [s["notification-event"][0] for s in statuses[1:]]
    assert [e["event-number"]["valueString"] for e in events] == ["1", "2", "3", "4"]
    assert [e["focus"]["valueReference"]["reference"] for e in events] == [
        *[f"{BASE}/Observation/{lab['id']}"] * 3,
        f"{BASE}/DiagnosticReport/{report['id']}",
    ]
    assert [b["entry"][1]["request"]["method"] for b in got[1:]] == ["POST", "PUT", "DELETE", "POST"]
    assert got[1]["entry"][1]["resource"]["valueQuantity"]["value"] == 5.5
    assert got[2]["entry"][1]["resource"]["valueQuantity"]["value"] == 6.1
    assert "resource" not in got[3]["entry"][1]  # a delete carries no resource
    assert got[4]["entry"][1]["resource"]["resourceType"] == "DiagnosticReport"
    assert statuses[0]["notification-event"] == [] and len(got[0]["entry"]) == 1


def test_emergency_topic_fires_on_out_of_range_or_critical_values_for_the_filtered_patient(
    http: TestClient, receiver: Receiver
) -> None:
    subscribe(
        http,
        factories.topic_subscription(
            factories.EMERGENCY_TOPIC,
            receiver.url,
            "patient=A",
            "Observation?code=http://loinc.org|8867-4",
        ),
    )
    high = http.post("/Observation", json=factories.critical_observation("A", value=190)).json()
    http.post("/Observation", json=factories.critical_observation("A", value=80))  # inside the range
    http.post("/Observation", json=factories.critical_observation("B", value=190))  # another patient
    other_code = factories.critical_observation("A", value=190)
    other_code["code"]["coding"][0]["code"] = "9279-1"
    http.post("/Observation", json=other_code)  # filtered out by code
    flagged = factories.observation("A", value=60)
    flagged["interpretation"] = [
        {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "LL"}
            ]
        }
    ]
    critical = http.post("/Observation", json=flagged).json()
    low = http.post("/Observation", json=factories.critical_observation("A", value=20)).json()
    got = settle(receiver, 4)[1:]  # after the handshake
    assert [b["entry"][1]["resource"]["id"] for b in got] == [high["id"], critical["id"], low["id"]]
    assert [status_of(b)["events-since-subscription-start"] for b in got] == ["1", "2", "3"]


@pytest.mark.parametrize("content", ["empty", "id-only"])
def test_content_empty_and_id_only(http: TestClient, receiver: Receiver, content: str) -> None:
    subscribe(http, factories.topic_subscription(factories.NEW_RESULT_TOPIC, receiver.url, content=content))
    lab = http.post("/Observation", json=factories.lab_observation("A")).json()
    (_, got) = settle(receiver, 2)
    (event,) = status_of(got)["notification-event"]
    assert event["event-number"]["valueString"] == "1"
    if content == "empty":
        assert "focus" not in event and len(got["entry"]) == 1
        assert lab["id"] not in orjson.dumps(got).decode()
    else:
        assert event["focus"]["valueReference"]["reference"] == f"{BASE}/Observation/{lab['id']}"
        assert got["entry"][1]["fullUrl"] == f"{BASE}/Observation/{lab['id']}"
        assert "resource" not in got["entry"][1]


def test_an_update_changes_the_filters_and_the_numbers_go_on(http: TestClient, receiver: Receiver) -> None:
    sub = subscribe(http, factories.topic_subscription(factories.NEW_RESULT_TOPIC, receiver.url, "patient=A"))
    first = http.post("/Observation", json=factories.lab_observation("A")).json()
    settle(receiver, 2)
    moved = factories.topic_subscription(factories.NEW_RESULT_TOPIC, receiver.url, "Observation?patient=B")
    updated = http.put(f"/Subscription/{sub['id']}", json={**moved, "id": sub["id"]})
    assert updated.status_code == 200, updated.text
    http.post("/Observation", json=factories.lab_observation("A"))
    second = http.post("/Observation", json=factories.lab_observation("B")).json()
    # the filter names Observation only: every DiagnosticReport now matches
    report = http.post("/DiagnosticReport", json=factories.lab_report("A", first["id"])).json()
    got = settle(receiver, 4)[2:]  # no second handshake
    assert [b["entry"][1]["resource"]["id"] for b in got] == [second["id"], report["id"]]
    assert [status_of(b)["events-since-subscription-start"] for b in got] == ["2", "3"]


def test_a_subscription_created_off_shakes_hands_when_switched_on(
    http: TestClient, receiver: Receiver
) -> None:
    body = factories.topic_subscription(factories.NEW_RESULT_TOPIC, receiver.url)
    sub = subscribe(http, {**body, "status": "off"})
    assert sub["status"] == "off"
    http.post("/Observation", json=factories.lab_observation("A"))  # off: not an event
    time.sleep(0.5)
    assert receiver.received == []
    assert http.put(f"/Subscription/{sub['id']}", json={**body, "id": sub["id"]}).status_code == 200
    lab = http.post("/Observation", json=factories.lab_observation("A")).json()
    got = settle(receiver, 2)
    assert [status_of(b)["type"] for b in got] == ["handshake", "event-notification"]
    assert got[1]["entry"][1]["resource"]["id"] == lab["id"]


def test_heartbeat_when_nothing_happens(http: TestClient, receiver: Receiver) -> None:
    subscribe(http, factories.topic_subscription(factories.NEW_RESULT_TOPIC, receiver.url, heartbeat=1))
    receiver.wait_for(3, timeout=30)
    kinds = [status_of(b)["type"] for b in bundles(receiver.received[:3])]
    assert kinds == ["handshake", "heartbeat", "heartbeat"]
    assert all(r.event == 0 for r in receiver.received[:3])


def status_becomes(http: TestClient, sub_id: str, status: str, timeout: float = 30) -> dict[str, Any]:
    """The Subscription once its status is `status` (waited for)."""
    deadline = time.monotonic() + timeout
    while (now := http.get(f"/Subscription/{sub_id}").json())["status"] != status:
        assert time.monotonic() < deadline, f"still {now['status']}, never {status}"
        time.sleep(0.05)
    result: dict[str, Any] = now
    return result


def test_an_answered_handshake_makes_the_subscription_active(http: TestClient, receiver: Receiver) -> None:
    sub = subscribe(http, factories.topic_subscription(factories.NEW_RESULT_TOPIC, receiver.url))
    assert sub["status"] == "requested"
    active = status_becomes(http, sub["id"], "active")
    assert "error" not in active
    (handshake,) = settle(receiver, 1)
    shake = status_of(handshake)
    assert (shake["type"], shake["status"]) == ("handshake", "requested")  # as sent, before the answer


def test_a_refused_handshake_is_error_with_a_reason_and_nothing_else_is_sent_until_it_succeeds(
    http: TestClient,
) -> None:
    down = Receiver(status=500).start()
    try:
        sub = subscribe(http, factories.topic_subscription(factories.NEW_RESULT_TOPIC, down.url))
        assert sub["status"] == "requested"
        lab = http.post("/Observation", json=factories.lab_observation("A")).json()  # queued behind it
        failed = status_becomes(http, sub["id"], "error")
        assert "handshake" in failed["error"] and "500" in failed["error"], failed["error"]
        down.wait_for(2)  # retried
        assert all(status_of(b)["type"] == "handshake" for b in [orjson.loads(r.body) for r in down.received])
        assert http.get(f"/Subscription/{sub['id']}").json()["status"] == "error"
        down.status = 200  # the receiver now answers: active, then the event queued meanwhile
        status_becomes(http, sub["id"], "active")

        def kinds() -> list[str]:
            return [status_of(orjson.loads(r.body))["type"] for r in list(down.received)]

        wait(lambda: "event-notification" in kinds(), 30, lambda: str(kinds()))
        time.sleep(0.3)  # nothing more follows
        got = kinds()
        assert got[-1] == "event-notification" and set(got[:-1]) == {"handshake"}, got
        last = orjson.loads(down.received[-1].body)
        assert last["entry"][1]["resource"]["id"] == lab["id"]
        assert status_of(last)["events-since-subscription-start"] == "1"
    finally:
        down.stop()


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"criteria": "urn:fhir-server:subscription-topic:nothing"}, "Subscription.criteria"),
        ({"criteria": "http://example.org/SubscriptionTopic/x"}, "Subscription.criteria"),
        ({"filters": ("ward=3",)}, "Subscription.criteria.extension[0]"),
        ({"filters": ("Condition?patient=A",)}, "Subscription.criteria.extension[0]"),
        ({"filters": ("patient",)}, "Subscription.criteria.extension[0]"),
        ({"filters": ("code:exact=x",)}, "Subscription.criteria.extension"),
        ({"content": "everything"}, "Subscription.channel.payload"),
        ({"heartbeat": 0}, "Subscription.channel.extension"),
        ({"heartbeat": 100_000}, "Subscription.channel.extension"),
    ],
)
def test_bad_topic_input_is_400(http: TestClient, change: dict[str, Any], where: str) -> None:
    body = factories.topic_subscription(
        factories.NEW_RESULT_TOPIC,
        "http://127.0.0.1:9/hook",
        *change.get("filters", ()),
        content=change.get("content", "full-resource"),
        heartbeat=change.get("heartbeat"),
    )
    if "criteria" in change:
        body["criteria"] = change["criteria"]
    response = http.post("/Subscription", json=body)
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert issue["expression"] == [where], issue


def test_a_very_long_code_filter_is_no_index_key_but_still_filters(
    http: TestClient, receiver: Receiver
) -> None:
    code = "x" * 300
    subscribe(http, factories.topic_subscription(factories.NEW_RESULT_TOPIC, receiver.url, f"code={code}"))
    http.post("/Observation", json=factories.lab_observation("A"))
    assert [status_of(b)["type"] for b in settle(receiver, 1)] == ["handshake"]


def test_the_capability_statement_declares_the_topics_and_operations(http: TestClient) -> None:
    statement = http.get("/metadata").json()
    (resource,) = [r for r in statement["rest"][0]["resource"] if r["type"] == "Subscription"]
    topics = [
        e["valueCanonical"]
        for e in resource["extension"]
        if e["url"].endswith("/capabilitystatement-subscriptiontopic-canonical")
    ]
    assert sorted(topics) == sorted([factories.EMERGENCY_TOPIC, factories.NEW_RESULT_TOPIC])
    definitions = {op["name"]: op["definition"] for op in resource["operation"]}
    backport = "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition"
    assert definitions["status"] == f"{backport}/backport-subscription-status"
    assert definitions["events"] == f"{backport}/backport-subscription-events"
    assert definitions["topic-list"] == f"{BASE}/OperationDefinition/Subscription-topic-list"
    definition = http.get("/OperationDefinition/Subscription-topic-list").json()
    assert (definition["code"], definition["resource"], definition["type"]) == (
        "topic-list",
        ["Subscription"],
        True,
    )


def topic_list(http: TestClient, path: str = "/Subscription/$topic-list", **kw: Any) -> list[str]:
    response = http.request(kw.pop("method", "GET"), path, **kw)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["meta"]["profile"] == [
        "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-topic-canonical-urls"
    ]
    assert {p["name"] for p in body.get("parameter", [])} <= {"subscription-topic-canonical"}
    return [p["valueCanonical"] for p in body.get("parameter", [])]


def test_topic_list_names_the_topics_by_canonical_url(http: TestClient) -> None:
    everything = sorted([factories.EMERGENCY_TOPIC, factories.NEW_RESULT_TOPIC])
    assert topic_list(http) == everything  # the same as the CapabilityStatement's extensions
    assert topic_list(http, f"/Subscription/$topic-list?url={factories.EMERGENCY_TOPIC}") == [
        factories.EMERGENCY_TOPIC
    ]
    asked = {
        "resourceType": "Parameters",
        "parameter": [{"name": "url", "valueUri": factories.NEW_RESULT_TOPIC}],
    }
    assert topic_list(http, method="POST", json=asked) == [factories.NEW_RESULT_TOPIC]
    assert topic_list(http, "/Subscription/$topic-list?url=http://example.org/none") == []


def test_a_transaction_with_both_types_of_a_topic_notifies_each(http: TestClient, receiver: Receiver) -> None:
    subscribe(http, factories.topic_subscription(factories.NEW_RESULT_TOPIC, receiver.url, "patient=A"))
    obs_url = "urn:uuid:7f2a3c4e-0000-4000-8000-000000000001"
    bundle = factories.transaction(
        factories.post_entry(factories.lab_observation("A"), obs_url),
        factories.post_entry({**factories.lab_report("A"), "result": [{"reference": obs_url}]}),
        factories.post_entry(factories.lab_observation("B")),
    )
    assert http.post("/", json=bundle).status_code == 200
    got = settle(receiver, 3)[1:]
    types = sorted(b["entry"][1]["resource"]["resourceType"] for b in got)
    assert types == ["DiagnosticReport", "Observation"]
    assert sorted(status_of(b)["events-since-subscription-start"] for b in got) == ["1", "2"]


def with_max_count(body: dict[str, Any], count: Any) -> dict[str, Any]:
    extension = {"url": f"{factories.BACKPORT}/backport-max-count", "valuePositiveInt": count}
    return {**body, "channel": {**body["channel"], "extension": [extension]}}


def test_max_count_limits_the_events_of_each_notification(http: TestClient, receiver: Receiver) -> None:
    body = factories.topic_subscription(factories.NEW_RESULT_TOPIC, receiver.url, content="id-only")
    sub = subscribe(http, with_max_count(body, 3))
    status_becomes(http, sub["id"], "active")  # handshake answered
    receiver.stop()  # the events pile up while the receiver is down
    labs = [http.post("/Observation", json=factories.lab_observation("A")).json()["id"] for _ in range(5)]

    def queued() -> str:
        searchset = http.get(f"/Subscription/{sub['id']}/$status").json()
        return str(status_of(searchset)["events-since-subscription-start"])

    wait(lambda: queued() == "5", 30, queued)
    receiver.start()  # same port
    got = settle(receiver, 3)[1:]
    numbers = [[e["event-number"]["valueString"] for e in status_of(b)["notification-event"]] for b in got]
    assert numbers == [["1", "2", "3"], ["4", "5"]]
    assert [status_of(b)["events-since-subscription-start"] for b in got] == ["3", "5"]
    focus = [e["fullUrl"] for b in got for e in b["entry"][1:]]
    assert focus == [f"{BASE}/Observation/{i}" for i in labs]
    assert [r.event for r in receiver.received[1:]] == [1, 4]  # the first event of each


def test_max_count_must_be_a_positive_int_up_to_1000(http: TestClient) -> None:
    body = factories.topic_subscription(factories.NEW_RESULT_TOPIC, "http://127.0.0.1:9/hook")
    for bad in (0, 1001, "3", True):
        response = http.post("/Subscription", json=with_max_count(body, bad))
        assert response.status_code == 400, (bad, response.text)
        # 0 and wrong JSON types are refused by the positiveInt check of the validator, 1001 here
        (where,) = response.json()["issue"][0]["expression"]
        assert where.startswith("Subscription.channel.extension"), where


def test_a_new_endpoint_shakes_hands_before_the_events_queued_for_the_old_one(
    http: TestClient, receiver: Receiver
) -> None:
    body = factories.topic_subscription(factories.NEW_RESULT_TOPIC, receiver.url, content="id-only")
    sub = subscribe(http, body)
    status_becomes(http, sub["id"], "active")
    receiver.wait_for(1)
    receiver.stop()  # events pile up for the old endpoint
    labs = [http.post("/Observation", json=factories.lab_observation("A")).json()["id"] for _ in range(3)]
    moved = Receiver(status=500).start()
    try:
        changed = {**body, "id": sub["id"], "channel": {**body["channel"], "endpoint": moved.url}}
        assert http.put(f"/Subscription/{sub['id']}", json=changed).json()["status"] == "requested"
        assert "handshake" in status_becomes(http, sub["id"], "error")["error"]
        moved.wait_for(2)  # the handshake, retried; never an event before it is answered
        assert {status_of(orjson.loads(r.body))["type"] for r in list(moved.received)} == {"handshake"}
        moved.status = 200
        status_becomes(http, sub["id"], "active")

        def events() -> list[str]:
            return [
                status_of(orjson.loads(r.body))["type"]
                for r in list(moved.received)
                if status_of(orjson.loads(r.body))["type"] != "handshake"
            ]

        wait(lambda: len(events()) == 3, 30, lambda: str(events()))
        ids = [
            orjson.loads(r.body)["entry"][1]["fullUrl"].rsplit("/", 1)[1]
            for r in moved.received
            if status_of(orjson.loads(r.body))["type"] == "event-notification"
        ]
        assert ids == labs
    finally:
        moved.stop()
