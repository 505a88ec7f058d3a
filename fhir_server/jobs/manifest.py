"""The completion manifest of a finished job (https://hl7.org/fhir/uv/bulkdata/STU2/export.html#response---complete-status).

Export: `transactionTime`, `request`, `requiresAccessToken` (true: the files need a token of the
client that asked), `output` (one item per file: type, absolute url, count), `deleted` (with
`_since`: files of transaction Bundles with DELETE entries) and `error` (OperationOutcome files).
Import (after the `$import` proposal): the same, `output` items naming their `inputUrl`.
"""

from __future__ import annotations

from typing import Any

from .. import instant
from .job import Job

DELETED_STEM = "Bundle-deleted-"


def status_url(base: str, job_id: str) -> str:
    """The polling location of a job."""
    return f"{base}/_jobs/{job_id}"


def file_url(base: str, job_id: str, name: str) -> str:
    """Where a file of a job is downloaded."""
    return f"{status_url(base, job_id)}/files/{name}"


def _items(base: str, job: Job, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": i["type"], "url": file_url(base, job.id, i["file"]), "count": i["count"]} for i in items]


def manifest(base: str, job: Job) -> dict[str, Any]:
    """The completion body of a completed job."""
    body: dict[str, Any] = {
        "transactionTime": instant.to_fhir(job.transaction_time),
        "request": job.request_url,
        "requiresAccessToken": True,
    }
    if job.kind == "import":
        body["output"] = [{k: v for k, v in item.items() if k != "file"} for item in job.outputs]
        body["error"] = _items(base, job, job.errors)
        return body
    deleted = [i for i in job.outputs if i["file"].startswith(DELETED_STEM)]
    body["output"] = _items(base, job, [i for i in job.outputs if i not in deleted])
    if job.params.get("since") is not None:
        body["deleted"] = _items(base, job, deleted)
    body["error"] = _items(base, job, job.errors)
    return body


def files(job: Job) -> dict[str, str]:
    """The downloadable files of a job: file name -> resource type in it."""
    return {i["file"]: i["type"] for i in [*job.outputs, *job.errors] if "file" in i}
