"""Each interaction path writes its AuditEvent, failures included (https://hl7.org/fhir/R4/auditevent.html, IHE BALP).

Through the real HTTP stack with SMART tokens, on both databases: reads, searches (with the query),
history, writes (from their change events), Bundles, operations, bulk kick-offs, failures (401,
403, 404) with their outcome; a patient sees only their own entries; no client can write one.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.audit import retention
from fhir_server.settings import Settings
from fhir_server.store.sql import Store
from tests import factories
from tests.api.test_scope_enforcement import mint
from tests.audit.conftest import BASE, client_of, patients, query_of, subtype, trail, user_of, whats
from tests.auth.smart_flow import Authorization, add_patient, add_user, authorize, exchange, log_in, register

CLINICIAN = "Practitioner/doc1"


@pytest.fixture
def data(store: Store) -> dict[str, str]:
    with store.write() as tx:
        tx.create(factories.patient("Alpha", "Ann"), "A")
        tx.create(factories.patient("Beta", "Bob"), "B")
        a_obs = tx.create(factories.observation("A")).res_id
        b_obs = tx.create(factories.observation("B")).res_id
    return {"A-obs": a_obs, "B-obs": b_obs}


@pytest.fixture
def doctor(audited: TestClient) -> dict[str, str]:
    return mint(audited, "user/*.cruds", kind="user", fhir_user=CLINICIAN)


def only(events: list[dict[str, Any]], code: str) -> list[dict[str, Any]]:
    return [e for e in events if subtype(e) == code]


def test_read_vread_and_404_are_recorded_with_who_what_and_outcome(
    audited: TestClient, data: dict[str, str], doctor: dict[str, str]
) -> None:
    assert audited.get("/Patient/A", headers=doctor).status_code == 200
    assert audited.get(f"/Observation/{data['B-obs']}/_history/1", headers=doctor).status_code == 200
    assert audited.get("/Patient/nobody", headers=doctor).status_code == 404
    events = trail(audited)
    reads = only(events, "read")
    ok = [e for e in reads if e["outcome"] == "0"]
    assert len(ok) == 1 and patients(ok[0]) == {"A"} and ok[0]["action"] == "R"
    assert client_of(ok[0]) == "app" and user_of(ok[0]) == CLINICIAN
    missing = [e for e in reads if e["outcome"] == "4"]
    assert (
        len(missing) == 1 and "404" in missing[0]["outcomeDesc"] and whats(missing[0]) == {"Patient/nobody"}
    )
    (vread,) = only(events, "vread")
    assert patients(vread) == {"B"} and f"Observation/{data['B-obs']}" in whats(vread)


def test_a_search_records_its_query_and_one_event_per_patient_returned(
    audited: TestClient, data: dict[str, str], doctor: dict[str, str]
) -> None:
    bundle = audited.get(
        "/Observation", params={"status": "final", "_include": "Observation:subject"}, headers=doctor
    )
    assert bundle.status_code == 200 and len(bundle.json()["entry"]) == 4
    searches = only(trail(audited), "search-type")
    assert {frozenset(patients(e)) for e in searches} == {frozenset({"A"}), frozenset({"B"})}
    for event in searches:
        assert event["action"] == "E" and event["outcome"] == "0"
        assert "status=final" in (query_of(event) or "")
        (patient,) = patients(event)
        mine = {f"Observation/{data[patient + '-obs']}"}
        assert whats(event) - {f"Patient/{patient}"} == mine  # never the other patient's resources


def test_history_is_recorded(audited: TestClient, data: dict[str, str], doctor: dict[str, str]) -> None:
    assert audited.get("/Patient/A/_history", headers=doctor).status_code == 200
    assert audited.get("/Observation/_history", headers=doctor).status_code == 200
    events = trail(audited)
    assert patients(only(events, "history-instance")[0]) == {"A"}
    assert {p for e in only(events, "history-type") for p in patients(e)} == {"A", "B"}


def test_writes_are_recorded_from_their_change_events(
    audited: TestClient, data: dict[str, str], doctor: dict[str, str]
) -> None:
    created = audited.post("/Observation", json=factories.observation("A"), headers=doctor)
    assert created.status_code == 201
    oid = created.json()["id"]
    body = created.json() | {"status": "amended"}
    assert audited.put(f"/Observation/{oid}", json=body, headers=doctor).status_code == 200
    patch = [{"op": "replace", "path": "/status", "value": "final"}]
    headers = doctor | {"Content-Type": "application/json-patch+json"}
    assert audited.patch(f"/Observation/{oid}", json=patch, headers=headers).status_code == 200
    assert audited.delete(f"/Observation/{oid}", headers=doctor).status_code == 204
    events = trail(audited)
    for code, action in (("create", "C"), ("update", "U"), ("patch", "U"), ("delete", "D")):
        found = [e for e in only(events, code) if e["outcomeDesc"] == f"{code} from rest"]
        assert len(found) == 1, [(subtype(e), e["outcomeDesc"]) for e in events]
        (event,) = found
        assert event["action"] == action and event["outcome"] == "0"
        assert patients(event) == {"A"} and f"Observation/{oid}" in whats(event)
        assert client_of(event) == "app" and user_of(event) == CLINICIAN


def test_a_refused_write_is_recorded_with_its_failure(audited: TestClient, data: dict[str, str]) -> None:
    reader = mint(audited, "patient/*.rs", patient="A")
    assert audited.post("/Observation", json=factories.observation("A"), headers=reader).status_code == 403
    (event,) = [e for e in only(trail(audited), "create") if e["outcome"] != "0"]
    assert event["outcome"] == "4" and "403" in event["outcomeDesc"] and patients(event) == {"A"}


def test_a_transaction_is_recorded_and_each_entry_with_its_patient(
    audited: TestClient, data: dict[str, str], doctor: dict[str, str]
) -> None:
    bundle = factories.transaction(
        factories.post_entry(factories.observation("A")), factories.post_entry(factories.observation("B"))
    )
    assert audited.post("/", json=bundle, headers=doctor).status_code == 200
    events = trail(audited)
    (envelope,) = only(events, "transaction")
    assert envelope["outcome"] == "0"
    creates = [e for e in only(events, "create") if e["outcomeDesc"].startswith("create from transaction:")]
    assert sorted(sorted(patients(e)) for e in creates) == [["A"], ["B"]]


def test_operations_are_recorded(audited: TestClient, data: dict[str, str], doctor: dict[str, str]) -> None:
    assert audited.get("/Patient/A/$everything", headers=doctor).status_code == 200
    system = mint(audited, "system/*.rs", kind="system")
    kickoff = audited.get("/$export", headers=system | {"Prefer": "respond-async"})
    assert kickoff.status_code == 202
    events = only(trail(audited), "operation")
    everything = [e for e in events if "$everything" in e["outcomeDesc"]]
    assert everything and {p for e in everything for p in patients(e)} == {"A"}
    export = [e for e in events if "$export" in e["outcomeDesc"]]
    assert len(export) == 1 and export[0]["outcome"] == "0"


def test_401_and_403_are_recorded(audited: TestClient, data: dict[str, str]) -> None:
    assert audited.get("/Patient/A").status_code == 401
    narrow = mint(audited, "patient/Patient.rs", patient="A")
    assert audited.get("/Observation", headers=narrow).status_code == 403
    events = trail(audited)
    (unauthenticated,) = only(events, "read")
    assert unauthenticated["outcome"] == "4" and "401" in unauthenticated["outcomeDesc"]
    assert client_of(unauthenticated) is None
    (forbidden,) = only(events, "search-type")
    assert forbidden["outcome"] == "4" and "403" in forbidden["outcomeDesc"] and patients(forbidden) == {"A"}


def test_a_patient_sees_only_the_entries_about_them(
    audited: TestClient, data: dict[str, str], doctor: dict[str, str]
) -> None:
    audited.get("/Patient/A", headers=doctor)
    audited.get("/Patient/B", headers=doctor)
    audited.get(f"/Observation/{data['B-obs']}", headers=doctor)
    trail(audited)
    a_token = mint(audited, "patient/*.rs", patient="A")
    mine = audited.get("/AuditEvent", params={"patient": "A", "_count": "200"}, headers=a_token).json()
    assert mine.get("entry"), "A sees who read their record"
    for entry in mine["entry"]:
        assert patients(entry["resource"]) == {"A"}
    everything = audited.get("/AuditEvent", params={"_count": "200"}, headers=a_token).json()
    assert {p for e in everything.get("entry", []) for p in patients(e["resource"])} == {"A"}
    others = audited.get("/AuditEvent", params={"patient": "B"}, headers=a_token).json()
    assert not others.get("entry")
    compartment = audited.get("/Patient/B/AuditEvent", headers=a_token)
    assert compartment.status_code in (200, 403, 404) and not compartment.json().get("entry")


@pytest.mark.parametrize("scope,kind", [("system/*.cruds", "system"), ("user/*.cruds", "user")])
def test_no_client_may_write_an_audit_event(
    audited: TestClient, data: dict[str, str], scope: str, kind: str
) -> None:
    headers = mint(audited, scope, kind=kind, fhir_user=CLINICIAN if kind == "user" else None)
    audited.get("/Patient/A", headers=headers)
    recorded = trail(audited)[0]
    forged = {k: v for k, v in recorded.items() if k not in ("id", "meta")}
    rid = recorded["id"]
    assert audited.post("/AuditEvent", json=forged, headers=headers).status_code == 403
    assert audited.put(f"/AuditEvent/{rid}", json=recorded, headers=headers).status_code == 403
    assert (
        audited.put("/AuditEvent/new-one", json=forged | {"id": "new-one"}, headers=headers).status_code
        == 403
    )
    patch = [{"op": "replace", "path": "/outcome", "value": "8"}]
    json_patch = headers | {"Content-Type": "application/json-patch+json"}
    assert audited.patch(f"/AuditEvent/{rid}", json=patch, headers=json_patch).status_code == 403
    assert audited.delete(f"/AuditEvent/{rid}", headers=headers).status_code == 403
    assert audited.delete("/AuditEvent", params={"_id": rid}, headers=headers).status_code == 403
    # FHIRPath Patch, conditional patch and $meta-add / $meta-delete are writes too
    fhirpath = factories.fhirpath_patch_setting({"resourceType": "AuditEvent", "outcome": "8"})
    assert audited.patch(f"/AuditEvent/{rid}", json=fhirpath, headers=headers).status_code == 403
    assert audited.patch(f"/AuditEvent?_id={rid}", json=patch, headers=json_patch).status_code == 403
    labels = {
        "resourceType": "Parameters",
        "parameter": [{"name": "meta", "valueMeta": {"tag": [{"code": "x"}]}}],
    }
    for op in ("$meta-add", "$meta-delete"):
        assert audited.post(f"/AuditEvent/{rid}/{op}", json=labels, headers=headers).status_code == 403
    bundle = factories.transaction(factories.post_entry(forged))
    assert audited.post("/", json=bundle, headers=headers).status_code == 403
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [factories.post_entry(forged)]}
    answer = audited.post("/", json=batch, headers=headers).json()
    assert answer["entry"][0]["response"]["status"].startswith("403")
    store: Store = audited.app.state.context.store  # type: ignore[attr-defined]
    with store.read() as tx:
        kept = tx.current("AuditEvent", rid)
    assert kept is not None and kept.version == 1 and not kept.deleted
    assert tx is not None


def test_anonymous_development_mode_cannot_write_one_either(store: Store, audit_settings: Settings) -> None:
    app = create_app(audit_settings.model_copy(update={"allow_anonymous": True}), store=store)
    with TestClient(app, base_url=BASE) as http:
        event = {"resourceType": "AuditEvent", "type": {"code": "rest"}, "recorded": "2024-01-01T00:00:00Z"}
        assert http.post("/AuditEvent", json=event).status_code == 403


def test_audit_off_records_nothing(store: Store, audit_settings: Settings, data: dict[str, str]) -> None:
    app = create_app(audit_settings.model_copy(update={"audit": False, "allow_anonymous": True}), store=store)
    with TestClient(app, base_url=BASE) as http:
        assert app.state.audit is None
        assert http.get("/Patient/A").status_code == 200
        assert http.post("/Observation", json=factories.observation("A")).status_code == 201
    with store.read() as tx:
        assert tx.current_of_type("AuditEvent", limit=10) == []


def test_retention_removes_old_audit_events_for_good(
    audited: TestClient, data: dict[str, str], doctor: dict[str, str]
) -> None:
    audited.get("/Patient/A", headers=doctor)
    assert trail(audited)
    store: Store = audited.app.state.context.store  # type: ignore[attr-defined]
    assert retention.sweep(store, 30) == 0  # all younger than 30 days
    later = int(time.time() * 1_000_000) + 31 * retention.DAY_US
    assert retention.sweep(store, 30, now_us=later) >= 1
    with store.read() as tx:
        assert tx.current_of_type("AuditEvent", limit=10) == []
        assert tx.current("Patient", "A") is not None
    assert audited.get("/AuditEvent", params={"patient": "A"}, headers=doctor).json().get("total", 0) <= 1


def test_login_and_token_issue_refresh_revoke_are_recorded(audited: TestClient, store: Store) -> None:
    register(store)
    add_patient(store, "p1")
    add_user(store, "anna", "Patient/p1")
    request = Authorization()
    page = audited.get(request.url())
    assert log_in(audited, page.text, "anna", password="wrong").status_code == 401
    tokens = exchange(audited, request, authorize(audited, request, "anna")["code"]).json()
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": "app"}
    assert audited.post("/auth/token", data=form).status_code == 200
    assert audited.post("/auth/token", data=form).status_code == 400  # a rotated refresh token
    revoke = {"token": tokens["access_token"], "client_id": "app"}
    assert audited.post("/auth/revoke", data=revoke).status_code == 200
    events = [e for e in trail(audited) if e["type"]["code"] == "110114"]
    seen = [(subtype(e), e["outcome"]) for e in events]
    assert seen == [
        ("110122", "4"),  # login refused
        ("110122", "0"),  # login
        ("token", "0"),
        ("refresh", "0"),
        ("refresh", "4"),
        ("revoke", "0"),
    ]
    assert all(client_of(e) == "app" for e in events)
    assert (user_of(events[1]) or "").startswith("user-")
    assert user_of(events[0]) is None  # a failed login names no account
