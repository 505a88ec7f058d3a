"""`POST Patient/[id]/$ingest` and `POST $ingest`: an upload runs in the background and its Task shows counts and problems, on SQLite and PostgreSQL (https://hl7.org/fhir/R4/async.html, https://hl7.org/fhir/R4/task.html)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.api.deps import get_principal
from fhir_server.auth import scopes
from fhir_server.auth.principal import Principal
from fhir_server.operations.ingest_task import output_counts, problem_report
from fhir_server.settings import Settings
from fhir_server.store.sql import Store
from tests.conftest import BASE
from tests.ingest.fixtures import PATIENT, bad_long_csv, long_csv
from tests.operations.ingest_sources import create_patient, make, stored, stored_types


@pytest.fixture
def app_settings(tmp_path: Path) -> Settings:
    """The conftest settings, with job files under a temporary directory and many jobs allowed."""
    return Settings(
        base_url=BASE,
        allow_anonymous=True,
        max_body_bytes=1_000_000,
        data_dir=tmp_path / "data",
        bulk_max_active_per_client=50,
    )


def _task_id(response: Any) -> str:
    assert response.status_code == 202, response.text
    location = response.headers["content-location"]
    assert location.startswith(f"{BASE}/Task/")
    assert response.json()["resourceType"] == "OperationOutcome"
    return str(location.rsplit("/", 1)[1])


def _finished(client: TestClient, task_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/Task/{task_id}")
        assert response.status_code == 200, response.text
        task: dict[str, Any] = response.json()
        if task["status"] in ("completed", "failed", "cancelled"):
            return task
        assert time.monotonic() < deadline, task
        time.sleep(0.05)


def _upload(client: TestClient, name: str, content: bytes, ctype: str, **fields: str) -> Any:
    return client.post(f"/{PATIENT}/$ingest", files={"file": (name, content, ctype)}, data=fields)


def test_multipart_upload_completes_and_its_task_shows_counts_and_the_problem_report(
    client: TestClient, store: Store
) -> None:
    create_patient(store)
    text, bad = bad_long_csv()
    task_id = _task_id(_upload(client, "mixed.csv", text.encode(), "text/csv", format="csv"))
    task = _finished(client, task_id)
    assert task["status"] == "completed"
    assert task["for"] == {"reference": PATIENT}
    counts = output_counts(task)
    assert counts["records"] == 9 and counts["rejected"] == len(bad)
    assert (counts["created"], counts["existing"]) == (4, 0)  # 3 Observations and their Provenance
    report = problem_report(task)
    assert report is not None
    locations = sorted(issue["location"][0] for issue in report["issue"])
    assert locations == sorted(f"mixed.csv:line {line}" for line in bad)
    assert all(issue["severity"] == "error" for issue in report["issue"])
    values = client.get("/Observation", params={"patient": PATIENT}).json()["entry"]
    assert sorted(e["resource"]["valueQuantity"]["value"] for e in values) == [70.1, 72, 74]


def test_task_goes_from_requested_through_in_progress_to_completed(client: TestClient, store: Store) -> None:
    create_patient(store)
    task_id = _task_id(_upload(client, "long.csv", long_csv()[0].encode(), "text/csv"))
    _finished(client, task_id)
    history = client.get(f"/Task/{task_id}/_history").json()["entry"]
    statuses = [e["resource"]["status"] for e in reversed(history)]
    assert statuses[0] == "requested" and "in-progress" in statuses and statuses[-1] == "completed"
    final = history[0]["resource"]
    assert final["executionPeriod"]["start"] <= final["executionPeriod"]["end"]


def test_raw_body_with_a_content_type_naming_the_format_is_ingested(
    client: TestClient, store: Store, tmp_path: Path
) -> None:
    create_patient(store)
    pdf = make("text-pdf-lab-report", tmp_path)
    response = client.post(
        "/$ingest",
        params={"patient": PATIENT},
        content=pdf.path.read_bytes(),
        headers={"Content-Type": "application/pdf", "Content-Disposition": 'attachment; filename="labs.pdf"'},
    )
    task = _finished(client, _task_id(response))
    assert task["status"] == "completed", task
    assert {i["valueString"] for i in task["input"]} == {"labs.pdf", "lab-report"}
    assert (
        output_counts(task)["created"] == len(pdf.codes) + 3
    )  # DocumentReference, DiagnosticReport, Provenance
    assert stored_types(store)["DiagnosticReport"] == 1


def test_dicom_without_a_name_or_type_is_recognised_by_its_content(
    client: TestClient, store: Store, tmp_path: Path
) -> None:
    create_patient(store)
    sr = make("dicom-sr", tmp_path)
    response = client.post(
        f"/{PATIENT}/$ingest",
        content=sr.path.read_bytes(),
        headers={"Content-Type": "application/octet-stream"},
    )
    task = _finished(client, _task_id(response))
    assert task["status"] == "completed", task
    assert "dicom" in {i["valueString"] for i in task["input"]}
    types = stored_types(store)
    assert types["ImagingStudy"] == 1 and types["Observation"] == len(sr.codes)


def test_uploading_the_same_file_again_creates_nothing(client: TestClient, store: Store) -> None:
    create_patient(store)
    text = long_csv()[0].encode()
    first = _finished(client, _task_id(_upload(client, "long.csv", text, "text/csv")))
    before = stored(store)
    again = _finished(client, _task_id(_upload(client, "long.csv", text, "text/csv")))
    resources, versions = stored(store)
    task_versions = len(client.get(f"/Task/{again['id']}/_history").json()["entry"])
    assert resources == before[0] + 1  # the second Task, nothing else
    assert versions == before[1] + task_versions
    assert output_counts(again)["created"] == 0
    assert output_counts(again)["existing"] == output_counts(first)["created"]


def test_a_file_with_nothing_ingestible_fails_its_task_with_the_reason(
    client: TestClient, store: Store
) -> None:
    create_patient(store)
    text = "date,metric,value,unit\n2024-03-01T08:00:00Z,heart_rate,fast,/min\n"
    task = _finished(client, _task_id(_upload(client, "bad.csv", text.encode(), "text/csv")))
    assert task["status"] == "failed"
    assert "nothing" in task["statusReason"]["text"]
    report = problem_report(task)
    assert report is not None and report["issue"][0]["location"] == ["bad.csv:line 2"]


def test_unknown_patient_is_404_and_leaves_no_task(
    client: TestClient, store: Store, app_settings: Settings
) -> None:
    response = client.post(
        "/Patient/nobody/$ingest", content=b"date,metric\n", headers={"Content-Type": "text/csv"}
    )
    assert response.status_code == 404, response.text
    assert stored_types(store)["Task"] == 0
    assert not list((app_settings.data_dir / "bulk").glob("*/upload/*"))


@pytest.mark.parametrize(
    ("path", "kwargs", "status"),
    [
        (f"/{PATIENT}/$ingest", {"content": b"x", "params": {"format": "garmin"}}, 400),
        (f"/{PATIENT}/$ingest", {"content": b"", "headers": {"Content-Type": "text/csv"}}, 400),
        (
            f"/{PATIENT}/$ingest",
            {"data": {"format": "csv"}, "files": {"other": ("a", b"b", "text/csv")}},
            400,
        ),
        ("/$ingest", {"content": b"a,b\n", "headers": {"Content-Type": "text/csv"}}, 400),
        ("/$ingest", {"content": b"a,b\n", "params": {"patient": "Group/1"}}, 400),
        (f"/{PATIENT}/$ingest", {"content": b"a,b\n", "params": {"timezone": "Mars/Olympus"}}, 400),
    ],
    ids=["unknown-format", "empty-body", "no-file-field", "no-patient", "not-a-patient", "bad-timezone"],
)
def test_bad_requests_are_refused_with_an_operation_outcome(
    client: TestClient, store: Store, path: str, kwargs: dict[str, Any], status: int
) -> None:
    create_patient(store)
    response = client.post(path, **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert stored_types(store)["Task"] == 0


def test_upload_over_the_size_limit_is_413(client: TestClient, store: Store, app_settings: Settings) -> None:
    create_patient(store)
    app_settings.ingest_max_upload_bytes = 100
    raw = client.post(f"/{PATIENT}/$ingest", content=b"x" * 101, headers={"Content-Type": "text/csv"})
    form = _upload(client, "big.csv", b"x" * 101, "text/csv")
    assert (raw.status_code, form.status_code) == (413, 413)
    assert not list((app_settings.data_dir / "bulk").glob("*/upload/*"))


@pytest.mark.parametrize(("patient", "status"), [("123", 202), ("456", 403)])
def test_a_patient_app_may_ingest_only_for_its_own_patient(
    client: TestClient, store: Store, patient: str, status: int
) -> None:
    create_patient(store)
    principal = Principal(
        client_id="app", kind="patient", scopes=scopes.parse("patient/*.cruds"), patient=patient
    )
    client.app.dependency_overrides[get_principal] = lambda: principal  # type: ignore[attr-defined]
    response = _upload(client, "long.csv", long_csv()[0].encode(), "text/csv")
    assert response.status_code == status, response.text
    if status == 202:
        task_id = _task_id(response)
        del client.app.dependency_overrides[get_principal]  # type: ignore[attr-defined]
        task = _finished(client, task_id)
        assert task["status"] == "completed", task
    assert stored_types(store)["Task"] == (1 if status == 202 else 0)


def test_the_app_that_asked_for_an_ingest_reads_its_task_and_no_one_else_does(
    client: TestClient, store: Store
) -> None:
    """Task is outside the Patient compartment; the status Task of an `$ingest` is readable by its
    requester (same client, user and patient context, any token) even without a Task scope."""
    create_patient(store)

    def caller(
        client_id: str = "app", patient: str = "123", subject: str = "u1", scope: str = "patient/*.cs"
    ) -> None:
        principal = Principal(
            client_id=client_id, kind="patient", scopes=scopes.parse(scope), patient=patient, subject=subject
        )
        client.app.dependency_overrides[get_principal] = lambda: principal  # type: ignore[attr-defined]

    caller()
    task_id = _task_id(_upload(client, "long.csv", long_csv()[0].encode(), "text/csv"))
    caller()  # a fresh token of the same app, user and patient
    assert _finished(client, task_id)["status"] == "completed"
    for other in (
        {"client_id": "other-app", "scope": "patient/*.rs"},
        {"subject": "u2", "scope": "patient/*.rs"},
        {"patient": "456", "scope": "patient/*.rs"},
    ):
        caller(**other)
        assert client.get(f"/Task/{task_id}").status_code in (403, 404), other
    caller(scope="patient/*.rs")
    assert client.get(f"/Task/{task_id}/_history/1").status_code == 404  # read only: polling


@pytest.mark.parametrize(
    ("kind", "scope", "charts"),
    [("patient", "patient/*.cs", {"Patient/123"}), ("system", "system/*.cs", {"Patient/123", "Patient/456"})],
    ids=["patient-app", "operator"],
)
def test_a_patient_app_cannot_ingest_into_another_chart_through_a_patient_column(
    client: TestClient, store: Store, kind: str, scope: str, charts: set[str]
) -> None:
    """The job enforces the requester's grants on every record: a CSV `patient` column naming
    another patient is a problem for a patient app's upload, and honoured for an operator's."""
    create_patient(store)
    create_patient(store, "456")
    principal = Principal(
        client_id="app",
        kind=kind,
        scopes=scopes.parse(scope),
        patient="123" if kind == "patient" else None,  # type: ignore[arg-type]
    )
    client.app.dependency_overrides[get_principal] = lambda: principal  # type: ignore[attr-defined]
    text = (
        "date,metric,value,unit,patient\n"
        "2024-03-01T08:00:00Z,heart_rate,70,/min,Patient/123\n"
        "2024-03-01T08:01:00Z,heart_rate,71,/min,Patient/456\n"
    )
    task_id = _task_id(_upload(client, "two.csv", text.encode(), "text/csv"))
    del client.app.dependency_overrides[get_principal]  # type: ignore[attr-defined]
    task = _finished(client, task_id)
    assert task["status"] == "completed", task
    stored_subjects = {
        e["resource"]["subject"]["reference"] for e in client.get("/Observation").json().get("entry", [])
    }
    assert stored_subjects == charts
    report = problem_report(task)
    if kind == "patient":
        assert report is not None
        [issue] = report["issue"]
        assert (
            issue["location"] == ["two.csv:line 3"]
            and "outside the patient compartment" in issue["diagnostics"]
        )
    else:
        assert report is not None and report["issue"][0]["diagnostics"] == "no problems"


def test_two_users_of_one_app_each_ingest_only_into_their_own_patients_chart(
    client: TestClient, store: Store
) -> None:
    """The grants go with each job: the same client, two users in two patient contexts, the same
    file naming both patients: each upload stores only its own patient's rows."""
    create_patient(store)
    create_patient(store, "456")
    text = (
        "date,metric,value,unit,patient\n"
        "2024-03-01T08:00:00Z,heart_rate,70,/min,Patient/123\n"
        "2024-03-01T08:01:00Z,heart_rate,71,/min,Patient/456\n"
    )
    tasks = []
    for subject, patient in (("u1", "123"), ("u2", "456")):
        principal = Principal(
            client_id="app",
            kind="patient",
            scopes=scopes.parse("patient/*.cs"),
            patient=patient,
            subject=subject,
        )
        client.app.dependency_overrides[get_principal] = lambda p=principal: p  # type: ignore[attr-defined]
        tasks.append(
            _task_id(
                client.post(
                    f"/Patient/{patient}/$ingest", files={"file": ("two.csv", text.encode(), "text/csv")}
                )
            )
        )
    del client.app.dependency_overrides[get_principal]  # type: ignore[attr-defined]
    for task_id in tasks:
        task = _finished(client, task_id)
        assert task["status"] == "completed", task
        assert (output_counts(task)["created"], output_counts(task)["rejected"]) == (
            2,
            1,
        )  # one row and a Provenance
    subjects = sorted(
        e["resource"]["subject"]["reference"] for e in client.get("/Observation").json()["entry"]
    )
    assert subjects == ["Patient/123", "Patient/456"]
