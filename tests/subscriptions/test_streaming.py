"""The websocket channel as R4 defines it and the Server-Sent Events channel, read by real clients over a real server (docs/subscriptions.md)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.sync.client import connect

from fhir_server.app import create_app
from fhir_server.store.sql import Store
from tests import factories
from tests.api.test_bulk_isolation import CLIENT, operator, patient_token
from tests.auth.smart_flow import register
from tests.bulk_support import settings_for
from tests.live_server import free_port, serving

SSE_TYPE = {
    "type": "message",
    "_type": {
        "extension": [
            {
                "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-channel-type",
                "valueCoding": {"system": "urn:fhir-server:subscription-channel-type", "code": "sse"},
            }
        ]
    },
}
OWN = "patient/*.rs patient/Subscription.cruds"


@pytest.fixture
def server(store: Store, tmp_path: Path, smart_data_dir: Path) -> Iterator[tuple[str, Any]]:
    """A real server requiring tokens, and the app (to mint tokens) ."""
    register(store, CLIENT)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app(settings_for(tmp_path, data_dir=smart_data_dir, base_url=base), store=store)
    with serving(app, port):
        yield base, app


class _Http:
    """What the token helpers need of a client: the app."""

    def __init__(self, app: Any) -> None:
        self.app = app


def _subscribe(base: str, headers: dict[str, str], criteria: str, channel: dict[str, Any]) -> dict[str, Any]:
    body = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "t",
        "criteria": criteria,
        "channel": channel,
    }
    response = httpx.post(f"{base}/Subscription", json=body, headers=headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def _write(base: str, headers: dict[str, str], *resources: dict[str, Any]) -> list[str]:
    ids = []
    for resource in resources:
        response = httpx.post(f"{base}/{resource['resourceType']}", json=resource, headers=headers)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def _patients(base: str, ops: dict[str, str]) -> None:
    for pid in ("A", "B"):
        response = httpx.put(f"{base}/Patient/{pid}", json={**factories.patient(pid), "id": pid}, headers=ops)
        assert response.status_code == 201, response.text


def test_websocket_bind_bound_and_a_ping_per_notification(server: tuple[str, Any]) -> None:
    base, app = server
    ops = operator(_Http(app), "system/*.cruds")  # type: ignore[arg-type]
    _patients(base, ops)
    a = patient_token(_Http(app), "A", 1, OWN)  # type: ignore[arg-type]
    b = patient_token(_Http(app), "B", 2, OWN)  # type: ignore[arg-type]
    sub = _subscribe(base, a, "Observation?", {"type": "websocket"})
    assert sub["status"] == "active"
    ws_url = base.replace("http://", "ws://") + "/websocket"
    with connect(ws_url, additional_headers=b) as other:
        other.send(f"bind {sub['id']}")
        assert other.recv(timeout=10).startswith("error")  # B may not bind to A's Subscription
    with connect(ws_url, additional_headers=a) as ws:
        ws.send("ping 1")
        assert ws.recv(timeout=10) == "pong 1"
        ws.send(f"bind {sub['id']}")
        assert ws.recv(timeout=10) == f"bound {sub['id']}"
        (obs,) = _write(base, ops, factories.observation("A"))
        _write(base, ops, factories.observation("B"))  # not A's: no ping
        assert ws.recv(timeout=10) == f"ping {sub['id']}"
        updated = httpx.put(
            f"{base}/Observation/{obs}", json={**factories.observation("A", value=99), "id": obs}, headers=ops
        )
        assert updated.status_code == 200
        assert ws.recv(timeout=10) == f"ping {sub['id']}"
        assert httpx.delete(f"{base}/Observation/{obs}", headers=ops).status_code in (200, 204)
        assert ws.recv(timeout=10) == f"ping {sub['id']}"
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1)  # B's Observation never came


def _read_events(
    base: str, path: str, headers: dict[str, str], count: int, out: list[dict[str, Any]]
) -> None:
    with httpx.stream("GET", f"{base}{path}", headers=headers, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event: dict[str, Any] = {}
        for line in response.iter_lines():
            if line.startswith("id: "):
                event["id"] = int(line[4:])
            elif line.startswith("data: "):
                event["data"] = orjson.loads(line[6:])
            elif line == "" and event:
                out.append(event)
                event = {}
                if len(out) >= count:
                    return


def test_server_sent_events_with_the_resource_and_resume_after_last_event_id(server: tuple[str, Any]) -> None:
    base, app = server
    ops = operator(_Http(app), "system/*.cruds")  # type: ignore[arg-type]
    _patients(base, ops)
    a = patient_token(_Http(app), "A", 1, OWN)  # type: ignore[arg-type]
    sub = _subscribe(base, a, "Observation?", {**SSE_TYPE, "payload": "application/fhir+json"})
    path = f"/_subscriptions/{sub['id']}/events"
    b = patient_token(_Http(app), "B", 2, OWN)  # type: ignore[arg-type]
    assert httpx.get(f"{base}{path}", headers=b).status_code == 404
    assert httpx.get(f"{base}{path}").status_code == 401
    got: list[dict[str, Any]] = []
    reader = threading.Thread(target=_read_events, args=(base, path, a, 2, got))
    reader.start()
    time.sleep(0.5)
    first = _write(
        base,
        ops,
        factories.observation("B"),
        factories.observation("A", value=1),
        factories.observation("A", value=2),
    )
    reader.join(timeout=30)
    assert [(e["id"], e["data"]["focus"], e["data"]["resource"]["valueQuantity"]["value"]) for e in got] == [
        (1, f"Observation/{first[1]}", 1),
        (2, f"Observation/{first[2]}", 2),
    ]
    # away: two more events; reconnecting with Last-Event-ID: 2 gets exactly those
    more = _write(base, ops, factories.observation("A", value=3), factories.observation("A", value=4))
    again: list[dict[str, Any]] = []
    _read_events(base, path, {**a, "Last-Event-ID": "2"}, 2, again)
    assert [(e["id"], e["data"]["focus"]) for e in again] == [
        (3, f"Observation/{more[0]}"),
        (4, f"Observation/{more[1]}"),
    ]
    assert httpx.get(f"{base}{path}", headers={**a, "Last-Event-ID": "x"}).status_code == 400


def _read_sse(base: str, path: str, headers: dict[str, str], out: list[dict[str, Any]]) -> None:
    """Every event (with its `event` name), comments skipped, until two notifications and then a
    heartbeat arrived (heartbeats may come between them while delivery lags)."""
    with httpx.stream("GET", f"{base}{path}", headers=headers, timeout=60) as response:
        assert response.status_code == 200
        event: dict[str, Any] = {}
        for line in response.iter_lines():
            if line.startswith(("id: ", "event: ", "data: ")):
                name, _, value = line.partition(": ")
                event[name] = orjson.loads(value) if name == "data" else value
            elif line == "" and event:
                out.append(event)
                event = {}
                kinds = [e["event"] for e in out]
                if kinds.count("notification") >= 2 and kinds[-1] == "heartbeat":
                    return


def _status(bundle: dict[str, Any]) -> dict[str, Any]:
    return {
        p["name"]: next((v for k, v in p.items() if k.startswith("value")), p.get("part"))
        for p in bundle["entry"][0]["resource"]["parameter"]
    }


def test_a_topic_over_server_sent_events_handshake_bundles_and_heartbeat(server: tuple[str, Any]) -> None:
    base, app = server
    ops = operator(_Http(app), "system/*.cruds")  # type: ignore[arg-type]
    _patients(base, ops)
    a = patient_token(_Http(app), "A", 1, OWN)  # type: ignore[arg-type]
    body = factories.topic_subscription(factories.NEW_RESULT_TOPIC, None, heartbeat=2, channel=SSE_TYPE)
    response = httpx.post(f"{base}/Subscription", json=body, headers=a)
    assert response.status_code == 201, response.text
    path = f"/_subscriptions/{response.json()['id']}/events"
    got: list[dict[str, Any]] = []
    reader = threading.Thread(target=_read_sse, args=(base, path, a, got))
    reader.start()
    time.sleep(0.5)
    (lab,) = _write(base, ops, factories.lab_observation("A"))
    _write(base, ops, factories.lab_observation("B"), factories.observation("A"))  # B's; not a result
    (report,) = _write(base, ops, factories.lab_report("A", lab))
    reader.join(timeout=60)
    assert got[0]["event"] == "handshake" and _status(got[0]["data"])["type"] == "handshake"
    notes = [e for e in got if e["event"] == "notification"]
    assert [n["id"] for n in notes] == ["1", "2"]
    assert [_status(n["data"])["events-since-subscription-start"] for n in notes] == ["1", "2"]
    assert [n["data"]["entry"][1]["resource"]["id"] for n in notes] == [lab, report]
    beats = [e for e in got if e["event"] == "heartbeat"]
    assert beats and all(_status(b["data"])["type"] == "heartbeat" for b in beats)
    assert all("id" not in b for b in beats)


def test_a_topic_over_websocket_pings_for_its_events_only(server: tuple[str, Any]) -> None:
    base, app = server
    ops = operator(_Http(app), "system/*.cruds")  # type: ignore[arg-type]
    _patients(base, ops)
    a = patient_token(_Http(app), "A", 1, OWN)  # type: ignore[arg-type]
    body = factories.topic_subscription(factories.EMERGENCY_TOPIC, None, channel={"type": "websocket"})
    response = httpx.post(f"{base}/Subscription", json=body, headers=a)
    assert response.status_code == 201, response.text
    sub_id = response.json()["id"]
    with connect(base.replace("http://", "ws://") + "/websocket", additional_headers=a) as ws:
        ws.send(f"bind {sub_id}")
        assert ws.recv(timeout=10) == f"bound {sub_id}"
        _write(base, ops, factories.critical_observation("A", value=80))  # inside its range
        (high,) = _write(base, ops, factories.critical_observation("A", value=200))
        assert ws.recv(timeout=10) == f"ping {sub_id}"
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1)
    events = httpx.get(f"{base}/Subscription/{sub_id}/$events", headers=a).json()
    assert [e["resource"]["id"] for e in events["entry"][1:]] == [high]
