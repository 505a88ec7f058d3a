"""Bulk Data status, delete and output file requests (https://hl7.org/fhir/uv/bulkdata/STU2/export.html#bulk-data-status-request).

Requirement ids (hl7.fhir.uv.bulkdata_2.0.0@N) are named in each test's docstring.
"""

from __future__ import annotations

import re
import time
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from fhir_server.api.deps import get_principal
from fhir_server.app import create_app
from fhir_server.jobs import job, worker
from fhir_server.settings import Settings
from fhir_server.store import snapshot
from fhir_server.store.sql import Store
from tests import bulk_support, factories
from tests.bulk_support import (
    BASE,
    Caller,
    export,
    kick_off,
    lines,
    put,
    settings_for,
    system_client,
    wait_done,
)

LEVELS = ["$export", "Patient/$export", "Group/g1/$export"]
INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")

bulk_caller = bulk_support.bulk_caller  # fixtures
bulk_client = bulk_support.bulk_client
bulk_settings = bulk_support.bulk_settings


class HeldQueue:
    """A job queue that keeps jobs waiting until `run_all`."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store, self.settings = store, settings
        self.submitted: list[str] = []

    def submit(self, job_id: str) -> None:
        self.submitted.append(job_id)

    def run_all(self) -> None:
        for job_id in self.submitted:
            worker.run(self.store, self.settings, job_id)


@pytest.fixture
def data(store: Store) -> None:
    p1, p2 = put(store, factories.patient("One"), factories.patient("Two"))
    put(store, factories.observation(p1), factories.observation(p2), factories.observation(p1))
    put(
        store,
        {
            "resourceType": "Group",
            "id": "g1",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": f"Patient/{p1}"}}],
        },
    )


def held_client(store: Store, settings: Settings, caller: Caller) -> tuple[TestClient, HeldQueue]:
    app = create_app(settings, store=store)
    app.dependency_overrides[get_principal] = caller
    held = HeldQueue(store, settings)
    app.state.job_queue = held
    return TestClient(app, base_url=BASE, raise_server_exceptions=False), held


def _outcome(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body


@pytest.mark.parametrize("path", LEVELS)
def test_a_running_job_is_202_with_x_progress_and_retry_after(
    store: Store, tmp_path: Path, data: None, path: str
) -> None:
    """GET on the polling location while in progress: 202, an X-Progress under 100 characters and a
    Retry-After in seconds (@21, @125, @132, @133, @134, @310)."""
    client, held = held_client(store, settings_for(tmp_path), Caller())
    with client:
        url = kick_off(client, path)
        response = client.get(url)
        assert response.status_code == 202
        assert 0 < len(response.headers["x-progress"]) < 100
        assert response.headers["retry-after"].isdigit()
        held.run_all()
        assert client.get(url).status_code == 200


def test_polling_faster_than_advised_is_429(store: Store, tmp_path: Path, data: None) -> None:
    """Polls closer together than advised: 429 with Retry-After and an OperationOutcome (@127, @128)."""
    client, _ = held_client(store, settings_for(tmp_path, bulk_min_poll_seconds=30), Caller())
    with client:
        url = kick_off(client)
        assert client.get(url).status_code == 202
        response = client.get(url)
        body = _outcome(response, 429)
        assert body["issue"][0]["code"] == "throttled"
        assert int(response.headers["retry-after"]) >= 1


@pytest.mark.parametrize("path", LEVELS)
def test_the_completion_body_has_every_required_field(bulk_client: TestClient, data: None, path: str) -> None:
    """Complete: 200, application/json, Expires, and transactionTime (instant), request (the kick-off
    URL), requiresAccessToken true, output items (type, absolute url, count) and an error array
    (@22, @144, @145, @146, @147, @150, @151, @152, @155, @156, @157, @159, @160, @161, @162, @164,
    @165, @166, @168, @169, @175, @177, @178, @191, @192, @193, @195)."""
    url = kick_off(bulk_client, path, params={"_type": "Patient,Observation"})
    response = wait_done(bulk_client, url)
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == "application/json"
    assert parsedate_to_datetime(response.headers["expires"]).timestamp() > time.time()
    body = response.json()
    assert INSTANT.fullmatch(body["transactionTime"])
    assert body["request"] == f"{BASE}/{path}?_type=Patient%2CObservation"
    assert body["requiresAccessToken"] is True
    assert body["error"] == []
    assert body["output"]
    for item in body["output"]:
        assert set(item) == {"type", "url", "count"}
        assert item["url"].startswith(f"{BASE}/")
        assert isinstance(item["count"], int) and item["count"] > 0
    counts = {i["type"]: i["count"] for i in body["output"]}
    assert counts["Observation"] == (3 if path != "Group/g1/$export" else 2)


def test_an_export_that_finds_nothing_has_an_empty_output(bulk_client: TestClient, data: None) -> None:
    """No matching resources: an empty output array, no item for empty types (@167, @173)."""
    manifest = export(bulk_client, params={"_type": "Condition,Patient", "_since": "2999-01-01T00:00:00Z"})
    assert manifest["output"] == []


@pytest.mark.parametrize("path", LEVELS)
def test_delete_cancels_a_completed_job_and_its_files(
    bulk_client: TestClient, data: None, path: str, bulk_settings: Settings
) -> None:
    """DELETE on the status URL: 202, then 404 with an OperationOutcome for status and files; the
    files are removed (@120, @121, @122, @305, @306, @307, @308, @309)."""
    url = kick_off(bulk_client, path)
    manifest = wait_done(bulk_client, url).json()
    job_id = url.rsplit("/", 1)[1]
    assert (bulk_settings.data_dir / "bulk" / job_id).is_dir()
    response = bulk_client.delete(url)
    assert response.status_code == 202
    assert response.json()["resourceType"] == "OperationOutcome"
    _outcome(bulk_client.get(url), 404)
    _outcome(bulk_client.get(manifest["output"][0]["url"]), 404)
    assert not (bulk_settings.data_dir / "bulk" / job_id).exists()


def test_polling_or_deleting_a_cancelled_job_is_404(store: Store, tmp_path: Path, data: None) -> None:
    """A job cancelled while waiting never runs; polling and deleting it again answer 404 (@122, @308, @309)."""
    settings = settings_for(tmp_path)
    client, held = held_client(store, settings, Caller())
    with client:
        url = kick_off(client)
        assert client.delete(url).status_code == 202
        held.run_all()
        _outcome(client.get(url), 404)
        _outcome(client.delete(url), 404)
        (row,) = [job.get(store, jid) for jid in held.submitted]
        assert row is not None and row.status == "cancelled" and row.outputs == []


def test_a_failed_job_answers_with_an_operation_outcome(
    store: Store, tmp_path: Path, data: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export that cannot complete: 5XX with an OperationOutcome giving the reason (@131, @136, @137)."""
    settings = settings_for(tmp_path)
    client, held = held_client(store, settings, Caller())

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("disk full")

    with client:
        url = kick_off(client)
        monkeypatch.setattr(snapshot, "stream", broken)
        held.run_all()
        body = _outcome(client.get(url), 500)
        # the reason names the kind of failure; an internal exception's text stays in the server log
        diagnostics = body["issue"][0]["diagnostics"]
        assert "internal error (OSError)" in diagnostics and "disk full" not in diagnostics


@pytest.mark.parametrize("path", LEVELS)
def test_status_and_files_need_a_token_of_the_same_client(
    bulk_client: TestClient, bulk_caller: Caller, data: None, path: str
) -> None:
    """Status and file requests are protected like the kick-off: no token 401; to another client's
    token the job does not exist (404); any token of the same client works (@5, @6, @161, @162)."""
    url = kick_off(bulk_client, path)
    manifest = wait_done(bulk_client, url).json()
    file_url = manifest["output"][0]["url"]
    bulk_caller.principal = None
    _outcome(bulk_client.get(url), 401)
    _outcome(bulk_client.get(file_url), 401)
    _outcome(bulk_client.delete(url), 401)
    bulk_caller.principal = system_client("someone-else")
    _outcome(bulk_client.get(url), 404)
    _outcome(bulk_client.get(file_url), 404)
    _outcome(bulk_client.delete(url), 404)
    bulk_caller.principal = system_client()  # a fresh token of the same client
    assert bulk_client.get(url).status_code == 200
    assert bulk_client.get(file_url).status_code == 200


@pytest.mark.parametrize("path", LEVELS)
def test_output_files_are_fhir_ndjson_of_one_type_each(
    bulk_client: TestClient, data: None, path: str
) -> None:
    """Files: 200, Content-Type application/fhir+ndjson, one resource per line, one type per file,
    the count of the manifest (@23, @24, @148, @170, @204, @206, @207, @208, @209)."""
    manifest = export(bulk_client, path)
    for item in manifest["output"]:
        response = bulk_client.get(item["url"], headers={"Accept": "application/fhir+ndjson"})
        assert response.status_code == 200
        assert response.headers["content-type"].split(";")[0] == "application/fhir+ndjson"
        rows = [orjson.loads(line) for line in response.content.splitlines()]
        assert len(rows) == item["count"]
        assert {r["resourceType"] for r in rows} == {item["type"]}


def test_a_file_download_needs_scopes_that_cover_its_type(
    bulk_client: TestClient, bulk_caller: Caller, data: None
) -> None:
    """A token of the same client whose scopes no longer cover a type cannot fetch that file (@5, @9)."""
    manifest = export(bulk_client, params={"_type": "Patient,Observation"})
    urls = {i["type"]: i["url"] for i in manifest["output"]}
    bulk_caller.principal = system_client(scope="system/Patient.rs")
    assert bulk_client.get(urls["Patient"]).status_code == 200
    _outcome(bulk_client.get(urls["Observation"]), 403)


def test_unknown_files_and_jobs_are_404(bulk_client: TestClient, data: None) -> None:
    """Errored file and status requests: 4XX with an OperationOutcome (@210, @136)."""
    url = kick_off(bulk_client)
    wait_done(bulk_client, url)
    _outcome(bulk_client.get(f"{url}/files/Spaceship-1.ndjson"), 404)
    _outcome(bulk_client.get(f"{url}/files/..%2F..%2Fetc%2Fpasswd"), 404)
    _outcome(bulk_client.get(f"{BASE}/_jobs/0123456789abcdef0123456789abcdef"), 404)


def test_large_exports_are_split_into_several_files(store: Store, tmp_path: Path, data: None) -> None:
    """More resources than `bulk_file_max_resources`: several files of that size at most (@171, @172)."""
    put(store, *[factories.patient(f"P{i}") for i in range(7)])
    settings = settings_for(tmp_path, bulk_file_max_resources=3)
    app = create_app(settings, store=store)
    app.dependency_overrides[get_principal] = Caller()
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as client:
        manifest = export(client, params={"_type": "Patient"})
        assert [i["count"] for i in manifest["output"]] == [3, 3, 3]
        assert len({i["url"] for i in manifest["output"]}) == 3
        assert sum(len(v) for v in lines(client, manifest).values()) == 9


def test_expired_jobs_and_files_are_deleted(store: Store, tmp_path: Path, data: None) -> None:
    """Files expire after `bulk_file_ttl_seconds` (the Expires header) and are deleted with the job (@146)."""
    settings = settings_for(tmp_path, bulk_file_ttl_seconds=0, job_lease_seconds=1)
    app = create_app(settings, store=store)
    app.dependency_overrides[get_principal] = Caller()
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as client:
        url = kick_off(client, params={"_type": "Patient"})
        deadline = time.monotonic() + 30
        while client.get(url).status_code == 202:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.6)  # the sweep runs at most once per half lease
        _outcome(client.get(url), 404)
        assert not (settings.data_dir / "bulk" / url.rsplit("/", 1)[1]).exists()
