"""A Subscription delivers only what its owner may read, and belongs to its owner (issue 14, acceptance 3).

Two patients of the public `demo-app` client (two users of the same client), a category-restricted
token and the operator's system token; real access tokens, a real HTTP receiver per owner.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.store.sql import Store
from tests import factories
from tests.api.test_bulk_isolation import CLIENT, operator, patient_token
from tests.auth.smart_flow import register
from tests.bulk_support import BASE, settings_for
from tests.subscriptions.receiver import Receiver
from tests.subscriptions.test_rest_hook import subscription

LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
VITALS = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"
OWN = "patient/Subscription.cruds"
Headers = dict[str, str]


@pytest.fixture
def http(store: Store, tmp_path: Path, smart_data_dir: Path) -> Iterator[TestClient]:
    register(store, CLIENT)
    settings = settings_for(
        tmp_path,
        data_dir=smart_data_dir,
        subscription_allow_loopback=True,
        subscription_retry_base_seconds=0.05,
    )
    with TestClient(create_app(settings, store=store), base_url=BASE, raise_server_exceptions=False) as c:
        ops = operator(c, "system/*.cruds")
        for pid, family in (("A", "Alpha"), ("B", "Beta")):
            assert (
                c.put(
                    f"/Patient/{pid}", json={**factories.patient(family), "id": pid}, headers=ops
                ).status_code
                == 201
            )
        yield c


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made = [Receiver().start() for _ in range(3)]
    yield made
    for r in made:
        r.stop()


def _subscribe(http: TestClient, headers: Headers, criteria: str, url: str) -> Any:
    return http.post(
        "/Subscription", json=subscription(criteria, url, payload="application/fhir+json"), headers=headers
    )


def _lab(patient: str) -> dict[str, Any]:
    obs = factories.observation(patient, code="2345-7", value=5.5)
    obs["category"][0]["coding"][0]["code"] = "laboratory"
    return obs


def _write_both(http: TestClient) -> None:
    ops = operator(http, "system/*.cruds")
    for obs in (factories.observation("A"), _lab("A"), factories.observation("B"), _lab("B")):
        assert http.post("/Observation", json=obs, headers=ops).status_code == 201


def _about(receiver: Receiver, count: int) -> list[tuple[str, str]]:
    """(patient, category) of each notification once `count` arrived and a moment passed for any extra."""
    receiver.wait_for(count)
    time.sleep(0.5)
    out = []
    for r in receiver.received:
        body = orjson.loads(r.body)
        out.append((body["subject"]["reference"], body["category"][0]["coding"][0]["code"]))
    return out


def test_a_patient_context_subscription_never_receives_another_patients_resource(
    http: TestClient, receivers: list[Receiver]
) -> None:
    a = patient_token(http, "A", 1, f"patient/*.rs {OWN}")
    b = patient_token(http, "B", 2, f"patient/*.rs {OWN}")
    assert _subscribe(http, a, "Observation?", receivers[0].url).status_code == 201
    # B asks for A's Observations by name: accepted (a search B may run), but B's grants apply
    assert _subscribe(http, b, "Observation?subject=Patient/A", receivers[1].url).status_code == 201
    assert (
        _subscribe(http, operator(http, "system/*.cruds"), "Observation?", receivers[2].url).status_code
        == 201
    )
    _write_both(http)
    assert _about(receivers[0], 2) == [("Patient/A", "vital-signs"), ("Patient/A", "laboratory")]
    assert _about(receivers[2], 4) == [
        ("Patient/A", "vital-signs"),
        ("Patient/A", "laboratory"),
        ("Patient/B", "vital-signs"),
        ("Patient/B", "laboratory"),
    ]
    assert receivers[1].received == []


def test_a_vital_signs_owner_never_receives_a_laboratory_observation(
    http: TestClient, receivers: list[Receiver]
) -> None:
    vitals = patient_token(http, "A", 1, f"patient/Observation.rs?category={VITALS} {OWN}")
    assert _subscribe(http, vitals, "Observation?patient=A", receivers[0].url).status_code == 201
    _write_both(http)
    assert _about(receivers[0], 1) == [("Patient/A", "vital-signs")]


def test_a_criteria_outside_the_owners_scopes_is_refused(http: TestClient, receivers: list[Receiver]) -> None:
    a = patient_token(http, "A", 1, f"patient/Observation.rs {OWN}")
    refused = _subscribe(http, a, "Condition?", receivers[0].url)
    assert refused.status_code == 403, refused.text
    assert refused.json()["issue"][0]["expression"] == ["Subscription.criteria"]
    chained = _subscribe(http, a, "Observation?subject.name=Beta", receivers[0].url)
    assert chained.status_code == 403, chained.text
    without_scope = patient_token(http, "A", 1, "patient/Observation.rs")
    assert _subscribe(http, without_scope, "Observation?", receivers[0].url).status_code == 403


def test_a_subscription_belongs_to_its_owner(http: TestClient, receivers: list[Receiver]) -> None:
    a = patient_token(http, "A", 1, f"patient/*.rs {OWN}")
    b = patient_token(http, "B", 2, f"patient/*.rs {OWN}")
    sub = _subscribe(http, a, "Observation?", receivers[0].url).json()
    path = f"/Subscription/{sub['id']}"
    assert http.get(path, headers=a).status_code == 200
    assert http.get(path, headers=patient_token(http, "A", 1, f"patient/*.rs {OWN}")).status_code == 200
    assert http.get(path, headers=b).status_code == 404
    assert (
        http.put(
            path, json={**sub, "channel": {**sub["channel"], "endpoint": receivers[1].url}}, headers=b
        ).status_code
        == 403
    )
    assert http.delete(path, headers=b).status_code == 403
    assert http.get(path, headers=a).json()["channel"]["endpoint"] == receivers[0].url
    assert http.delete(path, headers=a).status_code in (200, 204)
    _write_both(http)
    time.sleep(0.5)
    assert receivers[0].received == []


# ---------------- topic-based Subscriptions (Subscriptions Backport IG) ----------------


def _topic(http: TestClient, headers: Headers, topic: str, url: str, *filters: str) -> Any:
    return http.post(
        "/Subscription", json=factories.topic_subscription(topic, url, *filters), headers=headers
    )


def _critical(patient: str, category: str) -> dict[str, Any]:
    obs = factories.critical_observation(patient, value=190)
    obs["category"][0]["coding"][0]["code"] = category
    return obs


def _topic_about(receiver: Receiver, count: int) -> list[tuple[str, str]]:
    """(patient, category or type) of each event notification, after the handshake."""
    receiver.wait_for(count + 1)
    time.sleep(0.5)
    out = []
    for r in receiver.received[1:]:
        resource = orjson.loads(r.body)["entry"][1]["resource"]
        kind = (
            resource["category"][0]["coding"][0]["code"]
            if resource["resourceType"] == "Observation"
            else "report"
        )
        out.append((resource["subject"]["reference"], kind))
    return out


def test_a_patient_context_topic_subscription_never_receives_another_patients_resource(
    http: TestClient, receivers: list[Receiver]
) -> None:
    a = patient_token(http, "A", 1, f"patient/*.rs {OWN}")
    b = patient_token(http, "B", 2, f"patient/*.rs {OWN}")
    ops = operator(http, "system/*.cruds")
    topic = factories.NEW_RESULT_TOPIC
    assert _topic(http, a, topic, receivers[0].url).status_code == 201  # no filter: the server restricts it
    # B filters on A: accepted (a search B may run), but B's grants apply
    assert _topic(http, b, topic, receivers[1].url, "patient=A").status_code == 201
    assert _topic(http, ops, topic, receivers[2].url).status_code == 201
    _write_both(http)
    vital = http.post("/Observation", json=factories.observation("A"), headers=ops).json()["id"]
    for patient in ("A", "B"):
        report = factories.lab_report(patient, vital)
        assert http.post("/DiagnosticReport", json=report, headers=ops).status_code == 201
    assert _topic_about(receivers[0], 2) == [("Patient/A", "laboratory"), ("Patient/A", "report")]
    assert _topic_about(receivers[2], 4) == [
        ("Patient/A", "laboratory"),
        ("Patient/B", "laboratory"),
        ("Patient/A", "report"),
        ("Patient/B", "report"),
    ]
    assert [
        orjson.loads(r.body)["entry"][0]["resource"]["parameter"][3]["valueCode"]
        for r in receivers[1].received
    ] == ["handshake"]


def test_a_topic_outside_the_owners_scopes_is_refused_and_a_vital_signs_owner_gets_no_lab(
    http: TestClient, receivers: list[Receiver]
) -> None:
    observations_only = patient_token(http, "A", 1, f"patient/Observation.rs {OWN}")
    refused = _topic(
        http, observations_only, factories.NEW_RESULT_TOPIC, receivers[0].url
    )  # DiagnosticReport too
    assert refused.status_code == 403, refused.text
    assert refused.json()["issue"][0]["expression"] == ["Subscription.criteria"]
    vitals = patient_token(http, "A", 1, f"patient/Observation.rs?category={VITALS} {OWN}")
    assert _topic(http, vitals, factories.EMERGENCY_TOPIC, receivers[0].url).status_code == 201
    ops = operator(http, "system/*.cruds")
    for obs in (_critical("A", "laboratory"), _critical("A", "vital-signs"), _critical("B", "vital-signs")):
        assert http.post("/Observation", json=obs, headers=ops).status_code == 201
    assert _topic_about(receivers[0], 1) == [("Patient/A", "vital-signs")]


def test_a_topic_subscription_and_its_status_and_events_belong_to_its_owner(
    http: TestClient, receivers: list[Receiver]
) -> None:
    a = patient_token(http, "A", 1, f"patient/*.rs {OWN}")
    b = patient_token(http, "B", 2, f"patient/*.rs {OWN}")
    sub = _topic(http, a, factories.NEW_RESULT_TOPIC, receivers[0].url).json()
    _write_both(http)
    _topic_about(receivers[0], 1)
    for path in (f"/Subscription/{sub['id']}/$status", f"/Subscription/{sub['id']}/$events"):
        assert http.get(path, headers=a).status_code == 200
        assert http.get(path, headers=b).status_code == 404
    assert http.get("/Subscription/$status", headers=b).json().get("entry") is None
    (event,) = http.get(f"/Subscription/{sub['id']}/$events", headers=a).json()["entry"][1:]
    assert event["resource"]["subject"]["reference"] == "Patient/A"
    assert http.delete(f"/Subscription/{sub['id']}", headers=b).status_code == 403


def test_a_topic_notification_is_withheld_when_its_owner_can_no_longer_read_it_at_delivery(
    http: TestClient, receivers: list[Receiver]
) -> None:
    a = patient_token(http, "A", 1, f"patient/*.rs {OWN}")
    ops = operator(http, "system/*.cruds")
    assert _topic(http, a, factories.NEW_RESULT_TOPIC, receivers[0].url).status_code == 201
    receivers[0].wait_for(1)  # the handshake
    receivers[0].stop()
    moved = http.post("/Observation", json=_lab("A"), headers=ops).json()
    time.sleep(0.3)  # queued (or not yet matched), the receiver down
    assert (
        http.put(
            f"/Observation/{moved['id']}", json={**moved, "subject": {"reference": "Patient/B"}}, headers=ops
        )
    ).status_code == 200
    time.sleep(0.5)
    receivers[0].start()
    kept = http.post("/Observation", json=_lab("A"), headers=ops).json()
    receivers[0].wait_for(2)
    time.sleep(0.5)
    bodies = [orjson.loads(r.body) for r in receivers[0].received[1:]]
    assert [b["entry"][1]["resource"]["id"] for b in bodies] == [kept["id"]]  # never the moved one
    assert moved["id"] not in orjson.dumps(bodies).decode()


def test_topic_list_needs_a_subscription_scope_and_lists_only_the_topics_the_token_can_use(
    http: TestClient,
) -> None:
    def listed(headers: Headers) -> list[str]:
        response = http.get("/Subscription/$topic-list", headers=headers)
        assert response.status_code == 200, response.text
        return [p["valueCanonical"] for p in response.json().get("parameter", [])]

    both = sorted([factories.EMERGENCY_TOPIC, factories.NEW_RESULT_TOPIC])
    a = patient_token(http, "A", 1, f"patient/*.rs {OWN}")
    b = patient_token(http, "B", 2, f"patient/*.rs {OWN}")
    assert listed(a) == listed(b) == both  # two users of one client: the same topics
    # vital signs only: the emergency topic (Observation), not new-result (also DiagnosticReport)
    vitals = patient_token(http, "A", 1, f"patient/Observation.rs?category={VITALS} {OWN}")
    assert listed(vitals) == [factories.EMERGENCY_TOPIC]
    assert listed(operator(http, "system/*.cruds")) == both
    no_subscriptions = patient_token(http, "A", 1, "patient/*.rs")
    refused = http.get("/Subscription/$topic-list", headers=no_subscriptions)
    assert refused.status_code == 403 and refused.json()["resourceType"] == "OperationOutcome"
    assert http.get("/Subscription/$topic-list").status_code == 401  # no token at all
