"""May the reader download an output file of its job now (https://hl7.org/fhir/uv/bulkdata/STU2/export.html#file-request)?

A file holds what the kick-off's scopes selected: for each type, the grants recorded in the job's
`params["grants"]` (a patient compartment and/or a granular query each; no entry: unrestricted).
Each download is checked again against the reader's current token: every grant the file was
selected under must be implied by a grant the token has now (same or no compartment, no further
restriction), so the whole file is readable by the token, or it is refused (403), never filtered.
A `deleted` Bundle file lists resources of every exported type, so it needs all of them; the
OperationOutcome `error` files only repeat the request's own warnings.
"""

from __future__ import annotations

from typing import Any

from ..auth import enforce
from ..auth.principal import Access, Grant
from ..auth.scopes import make_query
from ..errors import Forbidden
from .job import Job
from .manifest import DELETED_STEM


def _recorded(job: Job, resource_type: str) -> tuple[Grant, ...]:
    """The grants the job selected `resource_type` under (unrestricted when none are recorded)."""
    recorded = (job.params.get("grants") or {}).get(resource_type)
    if not recorded:
        return (Grant(),)
    return tuple(
        Grant(g.get("compartment"), make_query((str(k), str(v)) for k, v in g.get("query") or []))
        for g in recorded
    )


def _types(job: Job, name: str, file_type: str) -> list[str]:
    """The resource types whose grants a file needs."""
    if not any(item.get("file") == name for item in job.outputs):
        return []  # an error file: the request's own warnings, or an import's problems
    if name.startswith(DELETED_STEM):
        return list(job.params.get("types") or [])
    return [file_type]


def check(principal: Any, job: Job, name: str, file_type: str) -> None:
    """403 unless `principal`'s scopes still cover all of the file `name` (of `file_type`) of `job`."""
    if principal is None:
        return
    for resource_type in _types(job, name, file_type):
        now = enforce.operation(principal, resource_type, needs="rs")
        if not isinstance(now, Access):
            raise Forbidden(f"The token's scopes do not cover {resource_type}: {now.reason}")
        if not all(any(g.implies(r) for g in now.grants) for r in _recorded(job, resource_type)):
            raise Forbidden(
                f"The token's scopes no longer cover every {resource_type} in this file "
                "(it was exported under broader scopes)"
            )
