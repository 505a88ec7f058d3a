"""The status of an `$ingest` job as a FHIR Task, derived from the job row: requested -> in-progress -> completed | failed | cancelled (https://hl7.org/fhir/R4/task.html).

The job row (`fhir_server/jobs/job.py`) is the one state; `task(job)` renders it and `publish` stores
the rendering as `Task/[job id]` (clients GET it, and its history shows the states), right after each
change of the job's state. Nothing else writes the Task. The Task's `output` carries the counts
(`records`, `created`, `existing`, `rejected`...) as integers and the problem report as an
OperationOutcome, contained in the Task and referenced from the `problems` output; both come from
the `report` the job's checkpoint records (`report(...)`).
"""

from __future__ import annotations

from typing import Any

from .. import instant
from ..interactions import update
from ..interactions.context import Context
from ..jobs import job
from ..jobs.job import Job
from ..settings import Settings
from ..store.outbox import WriteContext
from ..store.sql import Store

JOB_SYSTEM = "urn:fhir-server:ingest:job"
OUTPUT_SYSTEM = "urn:fhir-server:ingest:output"
INPUT_SYSTEM = "urn:fhir-server:ingest:input"
MAX_ISSUES = 1000  # problems listed in a Task; the rest are counted in a last issue
NOTHING_INGESTED = "nothing in the file could be ingested"
CANCELLED = "the job was cancelled"
_PROBLEMS_ID = "problems"
_STATUS = {
    "accepted": "requested",
    "in-progress": "in-progress",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
}
_WAITING = {"accepted": "waiting to start", "in-progress": "reading the file"}


def _concept(system: str, code: str, text: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}], "text": text}


def report(
    counts: dict[str, int], issues: list[dict[str, Any]], not_listed: int, text: str
) -> dict[str, Any]:
    """What a job's checkpoint records for its Task: counts, the listed problems (at most
    :data:`MAX_ISSUES`, the rest counted in a last issue) and the progress text."""
    listed = issues[:MAX_ISSUES]
    hidden = len(issues) - len(listed) + not_listed
    if hidden:
        listed.append(
            {"severity": "information", "code": "informational", "diagnostics": f"{hidden} more problems"}
        )
    if not listed:
        listed = [{"severity": "information", "code": "informational", "diagnostics": "no problems"}]
    return {"counts": counts, "issues": listed, "text": text}


def task(current: Job) -> dict[str, Any]:
    """The Task of an ingest job as its row says now: status, inputs, and once there are any, counts and problems."""
    params, progress = current.params, current.progress
    recorded: dict[str, Any] | None = progress.get("report")
    status, reason = _STATUS[current.status], current.reason
    if current.status == "completed" and progress.get("nothing_ingested"):
        status, reason = "failed", NOTHING_INGESTED
    elif current.status == "cancelled":
        reason = CANCELLED
    resource: dict[str, Any] = {"resourceType": "Task", "id": current.id}
    if recorded is not None:
        resource["contained"] = [
            {"resourceType": "OperationOutcome", "id": _PROBLEMS_ID, "issue": recorded["issues"]}
        ]
    resource |= {"identifier": [{"system": JOB_SYSTEM, "value": current.id}], "status": status}
    if reason:
        resource["statusReason"] = {"text": reason}
    business = recorded["text"] if recorded is not None else _WAITING.get(current.status)
    if business:
        resource["businessStatus"] = {"text": business}
    patient_ref, file, fmt = params["patient"], params["file"], params["format"]
    resource |= {
        "intent": "order",
        "code": {"text": "$ingest"},
        "description": f"Ingest {file} ({fmt}) for {patient_ref}",
        "for": {"reference": patient_ref},
    }
    if progress.get("started"):
        period = {"start": progress["started"]}
        if current.status not in ("accepted", "in-progress"):
            period["end"] = instant.to_fhir(current.updated)
        resource["executionPeriod"] = period
    resource |= {
        "authoredOn": params["authored"],
        "lastModified": instant.to_fhir(instant.now_us()),
        "input": [
            {"type": _concept(INPUT_SYSTEM, "file", "file"), "valueString": file},
            {"type": _concept(INPUT_SYSTEM, "format", "format"), "valueString": fmt},
        ],
    }
    outputs = [
        {"type": _concept(OUTPUT_SYSTEM, name, name), "valueInteger": int(value)}
        for name, value in (recorded["counts"] if recorded is not None else {}).items()
    ]
    if recorded is not None:
        outputs.append(
            {
                "type": _concept(OUTPUT_SYSTEM, "problems", "problem report"),
                "valueReference": {"reference": f"#{_PROBLEMS_ID}"},
            }
        )
    if outputs:
        resource["output"] = outputs
    return resource


def publish(store: Store, settings: Settings, job_id: str) -> None:
    """Store the Task of the job as its row is now (update-as-create: the job id is the Task id),
    through the validated write path, as the server (principal None)."""
    current = job.get(store, job_id)
    if current is None:
        return
    with store.write(WriteContext(f"ingest:{job_id}")) as tx:
        update.update(Context(store=store, settings=settings), tx, "Task", job_id, task(current))


def output_counts(resource: dict[str, Any]) -> dict[str, int]:
    """The integer outputs of a Task by code (what a client reads back)."""
    return {
        o["type"]["coding"][0]["code"]: o["valueInteger"]
        for o in resource.get("output", [])
        if "valueInteger" in o
    }


def problem_report(resource: dict[str, Any]) -> dict[str, Any] | None:
    """The contained OperationOutcome a Task's ``problems`` output refers to, if any."""
    for contained in resource.get("contained", []):
        if contained.get("resourceType") == "OperationOutcome":
            return dict(contained)
    return None
