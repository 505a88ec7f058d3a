"""The `job` table: asynchronous Bulk Data requests (https://hl7.org/fhir/uv/bulkdata/STU2/export.html#bulk-data-status-request).

One row per kick-off (export, import or ingest), owned by its requester (`client_id` and the
`requester_*` columns, see `requester.py`). `status` moves accepted -> in-progress -> completed | failed,
or to cancelled on a DELETE. A worker owns a running job through a lease (`owner`, `heartbeat`); a
job whose heartbeat is older than the lease time belongs to a dead worker and is taken over, from
its last checkpoint (`progress`), or failed with a reason after too many attempts. Times are
integer microseconds since the epoch (UTC), like the resource tables.
"""

from __future__ import annotations

import weakref

from sqlalchemy import JSON, BigInteger, Column, Engine, Index, Integer, String, Table, Text

from ..store.tables import metadata

STATUSES = ("accepted", "in-progress", "completed", "failed", "cancelled")
ACTIVE = ("accepted", "in-progress")

job = Table(
    "job",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # export | import
    Column("client_id", String(255), nullable=True),  # the requesting client; None: the server itself
    # the rest of the requester's identity (jobs/requester.py): only the same requester follows a job up
    Column("requester_kind", String(16), nullable=True),  # patient | user | system | anonymous-dev
    Column("requester_subject", String(255), nullable=True),  # the token's `sub`
    Column("requester_fhir_user", String(255), nullable=True),  # the token's `fhirUser`
    Column("requester_patient", String(64), nullable=True),  # the patient in context
    Column("status", String(16), nullable=False),
    Column("request_url", Text, nullable=False),  # the kick-off URL (without POST parameters)
    Column("params", JSON, nullable=False),  # the validated request parameters
    Column("transaction_time", BigInteger, nullable=False),  # the snapshot instant (µs)
    Column("progress", JSON, nullable=False),  # checkpoint: where a resumed run continues
    Column("progress_text", String(100), nullable=False, default=""),  # X-Progress
    Column("outputs", JSON, nullable=False),  # completed output file items
    Column("errors", JSON, nullable=False),  # error file items (OperationOutcome ndjson)
    Column("reason", Text, nullable=True),  # why a job failed
    Column("owner", String(128), nullable=True),  # the worker holding the lease
    Column("heartbeat", BigInteger, nullable=True),  # when the owner last proved it is alive
    Column("attempts", Integer, nullable=False, default=0),  # how many runs started
    Column("next_poll", BigInteger, nullable=False, default=0),  # polling before this gets a 429
    Column("created", BigInteger, nullable=False),
    Column("updated", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=True),  # files (and the job) are deleted after this
    Index("ix_job_client_status", "client_id", "status"),
    Index("ix_job_status_heartbeat", "status", "heartbeat"),
)

_ensured: weakref.WeakSet[Engine] = weakref.WeakSet()


def ensure(engine: Engine) -> None:
    """Create the table in a database migrated before it existed (it is in the initial migration now)."""
    if engine in _ensured:
        return
    job.create(engine, checkfirst=True)
    _ensured.add(engine)
