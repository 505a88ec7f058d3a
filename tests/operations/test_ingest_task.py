"""The `$ingest` Task is rendered from its job row, the one state (https://hl7.org/fhir/R4/task.html)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from fhir_server import instant
from fhir_server.jobs.job import Job
from fhir_server.operations import ingest_task
from fhir_server.operations.ingest_task import output_counts, problem_report

PARAMS = {"patient": "Patient/1", "file": "w.csv", "format": "csv", "authored": "2024-03-01T08:00:00Z"}
REPORT = ingest_task.report(
    {"records": 3, "created": 2},
    [{"severity": "error", "code": "invalid", "diagnostics": "bad"}],
    0,
    "3 read",
)


def _job(status: str, progress: dict[str, Any] | None = None, reason: str | None = None) -> Job:
    now = instant.now_us()
    return Job(
        id="j1", kind="ingest", client_id=None, requester_kind=None, requester_subject=None,
        requester_fhir_user=None, requester_patient=None, status=status, request_url="", params=PARAMS,
        transaction_time=now, progress=progress or {}, progress_text="", outputs=[], errors=[],
        reason=reason, owner=None, heartbeat=None, attempts=1, next_poll=0, created=now, updated=now,
        expires=None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("status", "task_status", "business"),
    [("accepted", "requested", "waiting to start"), ("in-progress", "in-progress", "reading the file")],
)
def test_a_job_without_a_report_is_a_task_without_outputs(
    status: str, task_status: str, business: str
) -> None:
    task = ingest_task.task(_job(status))
    assert (task["id"], task["status"], task["businessStatus"]["text"]) == ("j1", task_status, business)
    assert "output" not in task and "contained" not in task
    assert task["for"] == {"reference": "Patient/1"} and task["authoredOn"] == PARAMS["authored"]


def test_a_checkpointed_report_gives_the_counts_and_the_problem_report() -> None:
    task = ingest_task.task(_job("in-progress", {"started": "2024-03-01T08:01:00Z", "report": REPORT}))
    assert output_counts(task) == {"records": 3, "created": 2}
    report = problem_report(task)
    assert report is not None and report["issue"][0]["diagnostics"] == "bad"
    assert task["businessStatus"]["text"] == "3 read"
    assert task["executionPeriod"] == {"start": "2024-03-01T08:01:00Z"}


def test_a_finished_job_ends_the_execution_period_when_its_row_last_changed() -> None:
    done = replace(_job("completed", {"started": "2024-03-01T08:01:00Z", "report": REPORT}), updated=0)
    assert ingest_task.task(done)["executionPeriod"]["end"] == instant.to_fhir(0)


@pytest.mark.parametrize(
    ("status", "progress", "reason", "want"),
    [
        ("completed", {"nothing_ingested": True}, None, ("failed", ingest_task.NOTHING_INGESTED)),
        ("failed", {}, "The ingest failed: OSError", ("failed", "The ingest failed: OSError")),
        ("cancelled", {}, None, ("cancelled", ingest_task.CANCELLED)),
    ],
)
def test_the_task_status_and_reason_follow_the_job(
    status: str, progress: dict[str, Any], reason: str | None, want: tuple[str, str]
) -> None:
    task = ingest_task.task(_job(status, progress, reason))
    assert (task["status"], task["statusReason"]["text"]) == want


def test_only_the_first_thousand_problems_are_listed_and_the_rest_counted() -> None:
    issues = [{"severity": "error", "code": "invalid", "diagnostics": str(i)} for i in range(1005)]
    listed = ingest_task.report({}, issues, 3, "")["issues"]
    assert len(listed) == ingest_task.MAX_ISSUES + 1 and listed[-1]["diagnostics"] == "8 more problems"
