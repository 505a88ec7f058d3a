"""The kinds of asynchronous job this server runs, registered in one place at start-up (https://hl7.org/fhir/uv/bulkdata/STU2/export.html#bulk-data-kick-off-request).

`register()` is called by `create_app` (the API, and its in-process job threads) and by
`fhir-server worker` (Celery) before any job runs. A new kind is one module with a `HANDLER`
(`fhir_server/jobs/handlers.py`) and one line here.
"""

from __future__ import annotations

from .auth import async_status
from .jobs import export, handlers, import_, status_resource
from .operations import ingest_job


def register() -> None:
    """Register every job kind, and the test that a job's status resource is its requester's."""
    for handler in (export.HANDLER, import_.HANDLER, ingest_job.HANDLER):
        handlers.register(handler)
    async_status.register(status_resource.requested_by)
