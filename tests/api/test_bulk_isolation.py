"""Bulk Data jobs and `$ingest` Tasks belong to their requester, not just to its client (https://hl7.org/fhir/uv/bulkdata/STU2/export.html#bulk-data-status-request).

Every patient of the public `demo-app` client, and the operator's tokens of it, share one client id.
A job belongs to the whole identity that started it (client, kind of token, user, patient context):
to anyone else its status, files and DELETE answer exactly like an unknown job (404). The tokens here
are real access tokens, issued by the server's authorization server and validated per request.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from fhir_server.auth import operator_token
from fhir_server.auth.scopes import parse
from fhir_server.auth.tokens import Grant, new_grant_id
from fhir_server.auth.users import User
from fhir_server.store.sql import Store
from tests import factories
from tests.auth.smart_flow import bearer
from tests.bulk_support import BASE, SMART_APP, http, put, settings
from tests.ingest.fixtures import long_csv

__all__ = ["http", "settings"]  # fixtures (tests/bulk_support.py)
CLIENT = SMART_APP
LEVELS = ["$export", "Patient/$export", "Group/everyone/$export"]
UNKNOWN_JOB = "0123456789abcdef0123456789abcdef"
Headers = dict[str, str]


@pytest.fixture
def data(store: Store) -> None:
    """Patients A and B with an Observation each, and a Group of both."""
    put(
        store,
        {**factories.patient("Alpha", "Ann"), "id": "A"},
        {**factories.patient("Beta", "Bob"), "id": "B"},
    )
    put(store, factories.observation("A"), factories.observation("B"))
    members = [{"entity": {"reference": "Patient/A"}}, {"entity": {"reference": "Patient/B"}}]
    put(
        store,
        {"resourceType": "Group", "id": "everyone", "type": "person", "actual": True, "member": members},
    )


@pytest.fixture
def carer_link(store: Store) -> None:
    """A's carer r1: a caregiver's token needs an active RelatedPerson link to the patient (auth/caregiver.py)."""
    put(
        store,
        {"resourceType": "RelatedPerson", "id": "r1", "active": True, "patient": {"reference": "Patient/A"}},
    )


def token(
    http: TestClient,
    scope: str,
    *,
    kind: str = "patient",
    user: tuple[int, str | None] | None = None,
    patient: str | None = None,
) -> Headers:
    """A freshly issued access token of `demo-app` (user: its pk and fhirUser; patient: launch context)."""
    auth: Any = http.app.state.auth  # type: ignore[attr-defined]
    who = User(user[0], f"user{user[0]}", user[1]) if user else None
    context = {"patient": patient} if patient else {}
    grant = Grant(new_grant_id(), CLIENT, kind, parse(scope), who, context)  # type: ignore[arg-type]
    with auth.store.write() as tx:
        body = auth.issuer.issue(tx.conn, grant, now=int(time.time()))
    return bearer(body["access_token"])


def patient_token(http: TestClient, patient: str, user_pk: int, scope: str = "patient/*.rs") -> Headers:
    """A patient who logged in to `demo-app` (fhirUser = their Patient) with their record in context."""
    return token(
        http, f"launch/patient openid fhirUser {scope}", user=(user_pk, f"Patient/{patient}"), patient=patient
    )


def operator(http: TestClient, scope: str = "system/*.rs") -> Headers:
    """A token the operator mints from the command line for the same `demo-app` client."""
    app: Any = http.app
    return bearer(operator_token.mint(app.state.context.store, app.state.settings, CLIENT, scope, 10))


def kick_off(http: TestClient, headers: Headers, path: str = "Patient/$export") -> str:
    response = http.get(f"/{path}", headers={**headers, "Prefer": "respond-async"})
    assert response.status_code == 202, response.text
    return str(response.headers["content-location"])


def finished(http: TestClient, headers: Headers, url: str) -> dict[str, Any]:
    """Poll the job as its requester until it is done; its manifest."""
    deadline = time.monotonic() + 60
    while (response := http.get(url, headers=headers)).status_code == 202:
        assert time.monotonic() < deadline, "the job did not finish"
        time.sleep(0.02)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def resources(http: TestClient, headers: Headers, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for item in manifest["output"]:
        response = http.get(item["url"], headers=headers)
        assert response.status_code == 200, response.text
        out += [orjson.loads(line) for line in response.content.splitlines() if line]
    return out


def patients_in(rows: list[dict[str, Any]]) -> set[str]:
    """The patients the exported Patients and Observations are about (a Group of A and B is in both
    compartments, by the compartment definition, so it is left out here)."""
    assert {r["resourceType"] for r in rows} <= {"Patient", "Observation", "Group"}
    return {
        r["id"] if r["resourceType"] == "Patient" else r["subject"]["reference"].split("/")[1]
        for r in rows
        if r["resourceType"] != "Group"
    }


def assert_not_followed_up(
    http: TestClient, other: Headers, status_url: str, manifest: dict[str, Any]
) -> None:
    """`other` gets 404 for the status, every file and DELETE, just as for an unknown job id."""
    unknown = http.get(f"{BASE}/_jobs/{UNKNOWN_JOB}", headers=other)
    assert unknown.status_code == 404
    job_id = status_url.rsplit("/", 1)[1]
    for response in (
        http.get(status_url, headers=other),
        *(http.get(item["url"], headers=other) for item in manifest["output"]),
        http.delete(status_url, headers=other),
    ):
        assert response.status_code == 404, response.text
        assert response.json() == orjson.loads(unknown.text.replace(UNKNOWN_JOB, job_id))


def test_patient_b_cannot_poll_download_or_cancel_patient_as_export(http: TestClient, data: None) -> None:
    a, b = patient_token(http, "A", 1), patient_token(http, "B", 2)
    url = kick_off(http, a)
    manifest = finished(http, a, url)
    assert_not_followed_up(http, b, url, manifest)
    fresh_a = patient_token(http, "A", 1)  # any new token of the same requester follows the job up
    assert finished(http, fresh_a, url) == manifest  # B's DELETE cancelled nothing
    assert patients_in(resources(http, fresh_a, manifest)) == {"A"}


def test_a_patient_token_cannot_poll_or_download_the_operators_system_export(
    http: TestClient, data: None
) -> None:
    ops = operator(http)
    url = kick_off(http, ops, "$export")
    manifest = finished(http, ops, url)
    assert patients_in(
        [
            r
            for r in resources(http, ops, manifest)
            if r["resourceType"] in ("Patient", "Observation", "Group")
        ]
    ) == {"A", "B"}
    assert_not_followed_up(http, patient_token(http, "A", 1), url, manifest)
    assert finished(http, ops, url) == manifest


def test_two_users_of_the_same_client_and_patient_do_not_share_jobs(
    http: TestClient, data: None, carer_link: None
) -> None:
    """A patient and her carer (a RelatedPerson) both use `demo-app` with A's record in context."""
    patient = patient_token(http, "A", 1)
    carer = token(
        http, "launch/patient openid fhirUser patient/*.rs", user=(2, "RelatedPerson/r1"), patient="A"
    )
    url = kick_off(http, patient)
    manifest = finished(http, patient, url)
    assert_not_followed_up(http, carer, url, manifest)
    carer_url = kick_off(http, carer)
    carer_manifest = finished(http, carer, carer_url)
    assert_not_followed_up(http, patient, carer_url, carer_manifest)


def test_an_operator_token_is_another_owner_than_a_patient_of_the_same_client(
    http: TestClient, data: None
) -> None:
    """The operator's system token may export everything itself, but a patient's job is not its job."""
    a = patient_token(http, "A", 1)
    url = kick_off(http, a)
    manifest = finished(http, a, url)
    assert_not_followed_up(http, operator(http, "system/*.cruds"), url, manifest)


@pytest.mark.parametrize("path", LEVELS)
@pytest.mark.parametrize("who", ["patient", "patient-user"])
def test_a_patient_context_export_holds_only_that_patients_compartment_at_every_level(
    http: TestClient, data: None, path: str, who: str
) -> None:
    """A patient token, or a user token whose fhirUser is the Patient (user/ scopes confined to her
    compartment), exports A's compartment only, even at system level or for a Group with B in it."""
    if who == "patient":
        headers = patient_token(http, "A", 1)
    else:
        headers = token(http, "openid fhirUser user/*.rs", kind="user", user=(1, "Patient/A"))
    manifest = finished(http, headers, kick_off(http, headers, path))
    rows = resources(http, headers, manifest)
    assert {"Patient", "Observation"} <= {r["resourceType"] for r in rows}
    assert patients_in(rows) == {"A"}


def test_naming_another_patient_in_a_patient_export_exports_nothing_of_them(
    http: TestClient, data: None
) -> None:
    a = patient_token(http, "A", 1)
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "patient", "valueReference": {"reference": "Patient/B"}}],
    }
    response = http.post("/Patient/$export", headers={**a, "Prefer": "respond-async"}, json=body)
    assert response.status_code == 202, response.text
    manifest = finished(http, a, response.headers["content-location"])
    assert patients_in(resources(http, a, manifest)) == set()


def test_a_file_is_refused_to_a_token_of_the_same_requester_with_narrower_scopes(
    http: TestClient, data: None
) -> None:
    """Downloads are checked against the reader's current scopes: the whole file must be readable."""
    a = patient_token(http, "A", 1)
    manifest = finished(http, a, kick_off(http, a))
    urls = {item["type"]: item["url"] for item in manifest["output"]}
    narrower = patient_token(http, "A", 1, "patient/Observation.rs?category=laboratory")
    assert http.get(urls["Observation"], headers=narrower).status_code == 403  # vital signs in it
    assert http.get(urls["Patient"], headers=narrower).status_code == 403
    ops = operator(http)
    system_manifest = finished(http, ops, kick_off(http, ops, "$export"))
    observations = next(i["url"] for i in system_manifest["output"] if i["type"] == "Observation")
    assert (
        http.get(
            observations, headers=operator(http, "system/Observation.rs?category=laboratory")
        ).status_code
        == 403
    )
    assert http.get(observations, headers=operator(http, "system/Observation.rs")).status_code == 200


def _ingest(http: TestClient, headers: Headers, patient: str) -> str:
    text = long_csv()[0].encode()
    response = http.post(
        f"/Patient/{patient}/$ingest", headers=headers, files={"file": ("long.csv", text, "text/csv")}
    )
    assert response.status_code == 202, response.text
    return str(response.headers["content-location"]).rsplit("/", 1)[1]


def test_another_patient_sees_neither_the_ingest_job_nor_its_task(
    http: TestClient, data: None, carer_link: None
) -> None:
    a = patient_token(http, "A", 1, "patient/*.cruds")
    task_id = _ingest(http, a, "A")
    deadline = time.monotonic() + 60
    while (task := http.get(f"/Task/{task_id}", headers=a)).json()["status"] not in ("completed", "failed"):
        assert task.status_code == 200, task.text
        assert time.monotonic() < deadline, task.text
        time.sleep(0.05)
    assert task.json()["status"] == "completed"
    status_url = f"{BASE}/_jobs/{task_id}"
    others = [
        patient_token(http, "B", 2, "patient/*.cruds"),
        token(
            http, "launch/patient openid fhirUser patient/*.cruds", user=(3, "RelatedPerson/r1"), patient="A"
        ),
    ]
    for other in others:
        assert http.get(f"/Task/{task_id}", headers=other).status_code == 404
        unknown = http.get(f"/Task/{UNKNOWN_JOB}", headers=other)
        assert unknown.status_code == 404
        assert_not_followed_up(http, other, status_url, {"output": []})
    assert_not_followed_up(http, operator(http), status_url, {"output": []})
    assert http.get(f"/Task/{task_id}", headers=a).status_code == 200
