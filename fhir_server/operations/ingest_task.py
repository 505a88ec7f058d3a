"""The status of an `$ingest` job as a FHIR Task: requested -> in-progress -> completed | failed | cancelled (https://hl7.org/fhir/R4/task.html).

The Task is stored like any resource (clients GET `Task/[id]`). Its `output` carries the counts
(`records`, `created`, `existing`, `rejected`...) as integers and the problem report as an
OperationOutcome, contained in the Task and referenced from the `problems` output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .. import instant
from ..interactions import update
from ..interactions.context import Context

TaskStatus = Literal["requested", "in-progress", "completed", "failed", "cancelled"]
JOB_SYSTEM = "urn:fhir-server:ingest:job"
OUTPUT_SYSTEM = "urn:fhir-server:ingest:output"
INPUT_SYSTEM = "urn:fhir-server:ingest:input"
MAX_ISSUES = 1000  # problems listed in a Task; the rest are counted in a last issue
_PROBLEMS_ID = "problems"


@dataclass
class TaskState:
    """What a Task says about one ingest job, apart from its status."""

    job_id: str
    patient_ref: str
    file: str
    format: str
    authored: str = field(default_factory=lambda: instant.to_fhir(instant.now_us()))
    started: str | None = None
    ended: str | None = None


def _concept(system: str, code: str, text: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}], "text": text}


def _outcome(issues: list[dict[str, Any]], not_listed: int) -> dict[str, Any]:
    listed = issues[:MAX_ISSUES]
    hidden = len(issues) - len(listed) + not_listed
    if hidden:
        listed.append(
            {"severity": "information", "code": "informational", "diagnostics": f"{hidden} more problems"}
        )
    if not listed:
        listed = [{"severity": "information", "code": "informational", "diagnostics": "no problems"}]
    return {"resourceType": "OperationOutcome", "id": _PROBLEMS_ID, "issue": listed}


def task(
    state: TaskState,
    status: TaskStatus,
    *,
    counts: dict[str, int] | None = None,
    issues: list[dict[str, Any]] | None = None,
    not_listed: int = 0,
    progress: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """The Task resource for a job in ``status``: its inputs, and once there are any, counts and problems.

    ``issues`` are OperationOutcome issues (at most :data:`MAX_ISSUES` are listed, ``not_listed``
    counts what the adapter already left out); ``progress`` is the ``businessStatus`` text;
    ``reason`` the ``statusReason`` of a failed job.
    """
    resource: dict[str, Any] = {"resourceType": "Task", "id": state.job_id}
    if issues is not None:
        resource["contained"] = [_outcome(list(issues), not_listed)]
    resource |= {
        "identifier": [{"system": JOB_SYSTEM, "value": state.job_id}],
        "status": status,
    }
    if reason:
        resource["statusReason"] = {"text": reason}
    if progress:
        resource["businessStatus"] = {"text": progress}
    resource |= {
        "intent": "order",
        "code": {"text": "$ingest"},
        "description": f"Ingest {state.file} ({state.format}) for {state.patient_ref}",
        "for": {"reference": state.patient_ref},
    }
    if state.started:
        period = {"start": state.started}
        if state.ended:
            period["end"] = state.ended
        resource["executionPeriod"] = period
    resource |= {
        "authoredOn": state.authored,
        "lastModified": instant.to_fhir(instant.now_us()),
        "input": [
            {"type": _concept(INPUT_SYSTEM, "file", "file"), "valueString": state.file},
            {"type": _concept(INPUT_SYSTEM, "format", "format"), "valueString": state.format},
        ],
    }
    outputs = [
        {"type": _concept(OUTPUT_SYSTEM, name, name), "valueInteger": int(value)}
        for name, value in (counts or {}).items()
    ]
    if issues is not None:
        outputs.append(
            {
                "type": _concept(OUTPUT_SYSTEM, "problems", "problem report"),
                "valueReference": {"reference": f"#{_PROBLEMS_ID}"},
            }
        )
    if outputs:
        resource["output"] = outputs
    return resource


def save(ctx: Context, resource: dict[str, Any]) -> None:
    """Store the Task (update-as-create: the job id is the Task id) through the validated write path."""
    with ctx.store.write() as tx:
        update.update(ctx, tx, "Task", resource["id"], resource)


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
