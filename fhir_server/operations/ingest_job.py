"""The `$ingest` job kind: a file uploaded for a patient, ingested in the background; its status a Task derived from the job (https://hl7.org/fhir/R4/async.html).

`accept` records the job (``accepted``); the worker (`fhir_server/jobs/worker.py`) runs it through
`HANDLER`, registered in `fhir_server/job_kinds.py`. Every change of the job's state (accepted,
claimed, a checkpoint every `TASK_UPDATE_SECONDS`, completed, failed, cancelled) is followed by
`ingest_task.publish`, which renders the Task from the job row: the job is the one state. Re-running
a job is harmless, as every entry is a conditional create, and a resumed job skips the batches its
checkpoint says are done.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import instant
from ..interactions.context import Context
from ..jobs import job, output_files
from ..jobs.handlers import Handler, LeaseLost
from ..jobs.job import Job
from ..jobs.requester import Requester
from ..settings import Settings
from ..store.outbox import WriteContext
from ..store.sql import Store
from . import ingest_bulk, ingest_task
from .ingest import Tally, check_patient, checked_format, grants_from, open_run, parse_timezone

KIND = "ingest"
TASK_UPDATE_SECONDS = 5.0  # a running job republishes its Task's counts at most this often


def accept(
    ctx: Context,
    *,
    job_id: str,
    patient_ref: str,
    upload: Path,
    fmt: str,
    timezone_name: str | None = None,
    request_url: str = "",
    requester: Requester | None = None,
    grants: dict[str, Any] | None = None,
) -> Job:
    """Check the request, record the job and publish its Task (``requested``); the caller submits the job.

    404 when the patient does not exist; 400 for an unknown format or time zone; 429 when the
    requester already has too many jobs running. The upload is removed when the request is refused.
    The job, and so its Task's read exception, belongs to `requester` (`jobs/status_resource.py`).
    """
    try:
        check_patient(ctx, patient_ref)
        resolved = checked_format(fmt, upload)
        if timezone_name:
            parse_timezone(timezone_name)
        created = job.create(
            ctx.store,
            kind=KIND,
            requester=requester,
            request_url=request_url or f"{ctx.settings.base}/$ingest",
            params={
                "path": str(upload),
                "format": resolved,
                "patient": patient_ref,
                "file": upload.name,
                "timezone": timezone_name,
                "authored": instant.to_fhir(instant.now_us()),
                "grants": grants,  # ingest.write_grants: what the requester may write (None: all)
            },
            transaction_time=instant.now_us(),
            max_active=ctx.settings.bulk_max_active_per_client,
            retry_after=ctx.settings.bulk_retry_after_seconds,
            job_id=job_id,
        )
    except BaseException:
        output_files.remove(ctx.settings.data_dir, job_id)
        raise
    try:  # the Task is the server's rendering of the job: written as the server, not the caller
        ingest_task.publish(ctx.store, ctx.settings, job_id)
    except BaseException:
        job.cancel(ctx.store, job_id)
        output_files.remove(ctx.settings.data_dir, job_id)
        raise
    return created


# The records per chunk of a checkpoint that does not say (written before `chunk_size` was kept):
# `ingest_bulk.CHUNK` was 1,000 then. A resumed run skips `seen` chunks of the size they were cut in.
CHUNK_BEFORE_RECORDED = 1000


def _progress(tally: Tally, started: str, chunk_size: int) -> dict[str, Any]:
    """The job's checkpoint: where a resumed run continues, and the report its Task shows."""
    issues = [p.as_issue() for p in tally.problems]
    recorded = ingest_task.report(tally.output_counts(), issues, tally.not_listed, tally.progress_text())
    return {**tally.checkpoint(), "started": started, "report": recorded, "chunk_size": chunk_size}


def run(store: Store, settings: Settings, current: Job, owner: str, alive: Callable[[], bool]) -> None:
    """Run (or resume) one `$ingest` job: write the file's Bundles, checkpointing after each.

    The Task ends ``completed`` when anything was ingested (problems or not), ``failed`` when
    nothing could be; when the run breaks, the worker fails the job and `given_up` publishes it.
    """
    params = current.params
    writer = WriteContext.of(f"ingest:{current.id}", Requester.of_row(current))  # store/outbox.py
    ctx = Context(store=store, settings=settings, writer=writer)
    saved = dict(current.progress)
    started = saved.get("started") or instant.to_fhir(instant.now_us())
    resumed = int(saved.get("seen", 0)) > 0
    chunk_size = int(saved.get("chunk_size") or (CHUNK_BEFORE_RECORDED if resumed else ingest_bulk.CHUNK))

    def checkpoint(progress: dict[str, Any], text: str) -> None:
        if not alive() or not job.checkpoint(
            store, current.id, owner, progress=progress, progress_text=text, outputs=[], errors=[]
        ):
            raise LeaseLost(current.id)

    try:
        checkpoint({**saved, "started": started, "chunk_size": chunk_size}, current.progress_text)
        ingest_task.publish(store, settings, current.id)
        tz = parse_timezone(params["timezone"]) if params.get("timezone") else None
        ingest_run, tally = open_run(Path(params["path"]), params["format"], params["patient"], default_tz=tz)
        tally.restore(saved)
        last_update = time.monotonic()

        def on_bundle(t: Tally) -> None:
            nonlocal last_update
            checkpoint(_progress(t, started, chunk_size), t.progress_text())
            if time.monotonic() - last_update >= TASK_UPDATE_SECONDS:
                ingest_task.publish(store, settings, current.id)
                last_update = time.monotonic()

        grants = grants_from(params.get("grants"))
        ingest_bulk.write(ctx, ingest_run, tally, grants=grants, chunk_size=chunk_size, on_progress=on_bundle)
        checkpoint(
            {**_progress(tally, started, chunk_size), "nothing_ingested": not tally.ingested},
            tally.progress_text(),
        )
    except LeaseLost:
        after = job.get(store, current.id)
        if after is not None and after.status == "cancelled":
            ingest_task.publish(store, settings, current.id)
        raise
    output_files.remove(settings.data_dir, current.id)
    finished = job.complete(
        store, current.id, owner, outputs=[], errors=[], ttl_seconds=settings.bulk_file_ttl_seconds
    )
    if not finished:
        raise LeaseLost(current.id)
    ingest_task.publish(store, settings, current.id)


def given_up(store: Store, settings: Settings, current: Job, reason: str) -> None:
    """The job was failed outside its own run (it broke, or its worker kept dying): publish its Task."""
    ingest_task.publish(store, settings, current.id)
    output_files.remove(settings.data_dir, current.id)


HANDLER = Handler(KIND, run, given_up, status_type="Task")
