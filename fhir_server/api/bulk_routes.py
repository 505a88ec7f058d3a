"""Bulk Data Access routes (https://hl7.org/fhir/uv/bulkdata/STU2/export.html).

`$export` kick-off, status, delete, output files, and `$import`:

* `GET|POST [base]/$export`, `[base]/Patient/$export`, `[base]/Group/[id]/$export` -> 202 Accepted,
  `Content-Location: [base]/_jobs/[job]` (the FHIR Asynchronous Request Pattern,
  https://hl7.org/fhir/R4/async.html). `Prefer: respond-async` may be left out; `handling=lenient`
  turns unsupported parameters into warnings.
* `GET [base]/_jobs/[job]` -> 202 with `X-Progress` and `Retry-After` while running (429 when polled
  sooner than `bulk_min_poll_seconds`), 200 `application/json` manifest with `Expires` once done,
  500 OperationOutcome if it failed, 404 once cancelled or expired.
* `DELETE [base]/_jobs/[job]` -> 202; the job is cancelled and its files deleted.
* `GET [base]/_jobs/[job]/files/[name]` -> the NDJSON file, streamed (`application/fhir+ndjson`).
* `POST [base]/$import` -> 202 like an export: a Parameters resource naming local files under
  `FHIR_BULK_IMPORT_DIR` (`input` parts with `url`, optional `type`), or an NDJSON body.

A job belongs to its requester (`jobs/requester.py`: client, kind of token, user and patient
context): status, delete and file requests need a token of that same requester (any fresh token of
it); to anyone else the job does not exist (404). A file download also needs scopes that still cover
everything in the file (`jobs/file_request.py`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import FileResponse

from .. import instant
from ..errors import (
    Forbidden,
    Issue,
    NotFound,
    ServerError,
    TooLarge,
    TooManyRequests,
    UnsupportedMediaType,
    operation_outcome,
)
from ..interactions.context import Context
from ..jobs import file_request, import_, job, kickoff, manifest, output_files, queue
from ..jobs.job import Job
from ..jobs.requester import Requester
from . import http, prefer
from .deps import Ctx, Principal

router = APIRouter()
T = TypeVar("T")
NDJSON_TYPES = {"application/fhir+ndjson", "application/ndjson", "application/x-ndjson", "ndjson"}


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(fn, *args)


def jobs_of(app: FastAPI, ctx: Context) -> tuple[queue.JobQueue, queue.Sweeper]:
    """The app's job queue and sweeper (made on first use; tests may set `app.state.job_queue`)."""
    state = app.state
    if getattr(state, "job_queue", None) is None:
        state.job_queue = queue.for_settings(ctx.store, ctx.settings)
    if getattr(state, "job_sweeper", None) is None:
        state.job_sweeper = queue.Sweeper(ctx.store, ctx.settings, state.job_queue)
    return state.job_queue, state.job_sweeper


def _accepted(ctx: Context, created: Job, message: str) -> Response:
    outcome = operation_outcome([Issue(message, "informational", severity="information")])
    return Response(
        orjson.dumps(outcome),
        202,
        {"Content-Location": manifest.status_url(ctx.settings.base, created.id)},
        http.FHIR_JSON,
    )


# ---------------------------------------------------------------- $export kick-off


async def _export(
    request: Request, ctx: Ctx, principal: Any, level: str, path: str, group_id: str | None
) -> Response:
    prefs = prefer.parse(request.headers.getlist("prefer"))
    query = kickoff.request_pairs(request.query_params.multi_items())
    if request.method == "POST":
        body = await http.read_json(request, ctx.settings.max_body_bytes)
        pairs = query + kickoff.parameters_pairs(body)
        url = f"{ctx.settings.base}/{path}"
    else:
        pairs = query
        url = f"{ctx.settings.base}/{path}" + (f"?{request.url.query}" if request.url.query else "")
    kick = kickoff.KickOff(level, pairs, request.method, prefer.lenient(prefs), group_id)
    app = request.app

    def work() -> Job:
        jobs, sweeper = jobs_of(app, ctx)
        sweeper.maybe()
        tt = instant.now_us()
        params = kickoff.export_params(
            ctx.store, kick, principal, base=ctx.settings.base, max_count=ctx.settings.max_count
        )
        created = job.create(
            ctx.store,
            kind="export",
            requester=Requester.of(principal),
            request_url=url,
            params=params,
            transaction_time=tt,
            max_active=ctx.settings.bulk_max_active_per_client,
            retry_after=ctx.settings.bulk_retry_after_seconds,
        )
        jobs.submit(created.id)
        return created

    created = await _in_thread(work)
    return _accepted(ctx, created, "The export was accepted; poll the Content-Location for its status")


@router.get("/$export")
@router.post("/$export")
async def export_system(request: Request, ctx: Ctx, principal: Principal) -> Response:
    return await _export(request, ctx, principal, "system", "$export", None)


@router.get("/Patient/$export")
@router.post("/Patient/$export")
async def export_patients(request: Request, ctx: Ctx, principal: Principal) -> Response:
    return await _export(request, ctx, principal, "patient", "Patient/$export", None)


@router.get("/Group/{group_id}/$export")
@router.post("/Group/{group_id}/$export")
async def export_group(group_id: str, request: Request, ctx: Ctx, principal: Principal) -> Response:
    return await _export(request, ctx, principal, "group", f"Group/{group_id}/$export", group_id)


# ---------------------------------------------------------------- $import kick-off


async def _save_upload(request: Request, target: Path, limit: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    with open(target, "wb") as f:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"The upload is larger than the limit of {limit} bytes")
            f.write(chunk)


@router.post("/$import")
async def import_kickoff(request: Request, ctx: Ctx, principal: Principal) -> Response:
    settings = ctx.settings
    if principal is not None:
        from ..auth import enforce
        from ..auth.principal import Access

        access = enforce.operation(principal, "*", needs="cu")
        if not isinstance(access, Access) or not access.unrestricted:
            raise Forbidden("$import needs unrestricted create and update scopes (system/*.cu)")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    job_id = job.new_job_id()
    directory = output_files.job_dir(settings.data_dir, job_id)
    if ctype in NDJSON_TYPES:
        upload = directory / "upload.ndjson"
        try:
            await _save_upload(request, upload, settings.bulk_import_max_upload_bytes)
        except BaseException:
            output_files.remove(settings.data_dir, job_id)
            raise
        inputs = [{"url": "upload", "path": str(upload), "type": None}]
    elif ctype in http.JSON_TYPES or ctype in http.XML_TYPES or not ctype:
        body = await http.read_json(request, settings.max_body_bytes)
        inputs = import_.inputs_from_parameters(body, settings.bulk_import_dir)
    else:
        raise UnsupportedMediaType(
            "$import takes application/fhir+json or +xml (Parameters) or application/fhir+ndjson",
            "Content-Type",
        )
    app = request.app

    def work() -> Job:
        jobs, sweeper = jobs_of(app, ctx)
        sweeper.maybe()
        created = job.create(
            ctx.store,
            kind="import",
            requester=Requester.of(principal),
            request_url=f"{settings.base}/$import",
            params={"inputs": inputs},
            transaction_time=instant.now_us(),
            max_active=settings.bulk_max_active_per_client,
            retry_after=settings.bulk_retry_after_seconds,
            job_id=job_id,
        )
        jobs.submit(created.id)
        return created

    try:
        created = await _in_thread(work)
    except BaseException:
        output_files.remove(settings.data_dir, job_id)
        raise
    return _accepted(ctx, created, "The import was accepted; poll the Content-Location for its status")


# ---------------------------------------------------------------- status, delete, files


def _owned(ctx: Context, job_id: str, principal: Any) -> Job:
    """The caller's own job; another requester's job answers exactly like an unknown one."""
    current = job.get(ctx.store, job_id)
    if current is None or Requester.of_row(current) != Requester.of(principal):
        raise NotFound(f"There is no bulk data job '{job_id}' (it may have expired)")
    if current.status == "cancelled":
        raise NotFound(f"The bulk data job '{job_id}' was cancelled or deleted")
    return current


@router.get("/_jobs/{job_id}")
async def job_status(job_id: str, request: Request, ctx: Ctx, principal: Principal) -> Response:
    settings = ctx.settings
    app = request.app

    def work() -> Job:
        jobs_of(app, ctx)[1].maybe()
        current = _owned(ctx, job_id, principal)
        if current.status in ("accepted", "in-progress"):
            now = instant.now_us()
            wait = str(settings.bulk_retry_after_seconds)
            if now < current.next_poll:
                raise TooManyRequests(
                    f"Polling faster than advised: wait {wait} seconds between status requests",
                    headers={"Retry-After": wait},
                )
            job.polled(ctx.store, job_id, now + int(settings.bulk_min_poll_seconds * 1_000_000))
        return current

    current = await _in_thread(work)
    if current.status in ("accepted", "in-progress"):
        headers = {
            "X-Progress": (current.progress_text or current.status)[:99],
            "Retry-After": str(settings.bulk_retry_after_seconds),
        }
        return Response(status_code=202, headers=headers)
    if current.status == "failed":
        raise ServerError(current.reason or "The job failed")
    body = manifest.manifest(settings.base, current)
    headers = {"Expires": instant.to_http(current.expires)} if current.expires else {}
    return Response(orjson.dumps(body), 200, headers, "application/json")


@router.delete("/_jobs/{job_id}")
async def job_delete(job_id: str, request: Request, ctx: Ctx, principal: Principal) -> Response:
    def work() -> None:
        _owned(ctx, job_id, principal)
        if not job.cancel(ctx.store, job_id, ttl_seconds=ctx.settings.bulk_file_ttl_seconds):
            raise NotFound(f"The bulk data job '{job_id}' was cancelled or deleted")
        output_files.remove(ctx.settings.data_dir, job_id)

    await _in_thread(work)
    outcome = operation_outcome(
        [Issue("The job was cancelled and its files deleted", "informational", severity="information")]
    )
    return Response(orjson.dumps(outcome), 202, media_type=http.FHIR_JSON)


@router.get("/_jobs/{job_id}/files/{name}")
async def job_file(job_id: str, name: str, request: Request, ctx: Ctx, principal: Principal) -> Response:
    def work() -> Path:
        current = _owned(ctx, job_id, principal)
        rtype = manifest.files(current).get(name) if current.status == "completed" else None
        path = output_files.file_path(ctx.settings.data_dir, job_id, name)
        if rtype is None or path is None or not path.is_file():
            raise NotFound(f"Job '{job_id}' has no file '{name}' (it may have expired)")
        file_request.check(principal, current, name, rtype)
        return path

    path = await _in_thread(work)
    if not os.access(path, os.R_OK):
        raise NotFound(f"Job '{job_id}' has no file '{name}'")
    return FileResponse(path, media_type=output_files.NDJSON)
