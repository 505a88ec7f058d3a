"""`$ingest`: upload a health data file for a patient; it is ingested in the background, its status a Task (https://hl7.org/fhir/R4/async.html, https://hl7.org/fhir/R4/task.html).

* `POST [base]/Patient/[id]/$ingest` and `POST [base]/$ingest?patient=Patient/[id]` (or a
  `patient` form field).
* The body is `multipart/form-data` with the file in field `file` (and optional fields `format`,
  `timezone`, `patient`), or the raw file with a Content-Type naming its format (`text/csv`,
  `application/pdf`, `image/png`, `application/dicom`, `application/zip`...) and optional query
  parameters `format` and `timezone`. `format` is one of `fhir-server ingest`'s formats or `auto`.
* Answer: 202 Accepted, `Content-Location: [base]/Task/[id]`. The Task (`GET [base]/Task/[id]`)
  goes requested -> in-progress -> completed | failed, with the counts and the problem report
  (a contained OperationOutcome) in `Task.output`.

The work runs on the job queue (:mod:`fhir_server.jobs.queue`) as a job of kind `ingest`
(:mod:`fhir_server.operations.ingest_job`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from ..errors import Invalid, Issue, operation_outcome
from ..interactions.context import Context
from ..jobs import job, output_files
from ..jobs.job import Job
from ..jobs.requester import Requester
from ..operations import ingest, ingest_job
from . import http
from .bulk_routes import jobs_of
from .deps import Ctx
from .upload import Upload, save_body, save_form

router = APIRouter()
FILE_FIELD = "file"


async def _receive(request: Request, ctx: Context, job_id: str) -> Upload:
    settings = ctx.settings
    staging = ingest.upload_path(settings, job_id, ".receiving")
    limit = settings.ingest_max_upload_bytes
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        upload = await save_form(request, staging, FILE_FIELD, limit)
        if upload.path is None:
            raise Invalid(f"The form has no '{FILE_FIELD}' field holding the file", FILE_FIELD)
    else:
        upload = await save_body(request, staging, limit)
    if upload.size == 0:
        raise Invalid("The uploaded file is empty", FILE_FIELD)
    return upload


def _param(request: Request, upload: Upload, name: str) -> str | None:
    return upload.fields.get(name) or request.query_params.get(name) or None


async def _ingest(request: Request, ctx: Context, patient_ref: str | None) -> Response:
    settings = ctx.settings
    if patient_ref is not None:  # refuse before receiving what may be gigabytes
        ingest.check_access(ctx.principal, patient_ref)
        await asyncio.to_thread(ingest.check_patient, ctx, patient_ref)
    job_id = job.new_job_id()
    try:
        upload = await _receive(request, ctx, job_id)
        if patient_ref is None:
            given = _param(request, upload, "patient")
            if not given:
                raise Invalid(
                    "Name the patient: POST Patient/[id]/$ingest, or a 'patient' parameter", "patient"
                )
            patient_ref = ingest.patient_reference(given)
            ingest.check_access(ctx.principal, patient_ref)
        fmt, ext = ingest.upload_format(upload.media_type, _param(request, upload, "format"))
        assert upload.path is not None
        final = upload.path.with_name(ingest.upload_name(upload.filename, ext))
        upload.path.rename(final)
        app = request.app
        requester = Requester.of(ctx.principal)
        grants = ingest.write_grants(ctx.principal)  # enforced by the job (operations/ingest_bulk.py)
        timezone_name = _param(request, upload, "timezone")
        reference = patient_ref

        def work() -> Job:
            jobs, sweeper = jobs_of(app, ctx)
            sweeper.maybe()
            accepted = ingest_job.accept(
                ctx,
                job_id=job_id,
                patient_ref=reference,
                upload=final,
                fmt=fmt,
                timezone_name=timezone_name,
                request_url=str(request.url),
                requester=requester,
                grants=grants,
            )
            jobs.submit(job_id)
            return accepted

        accepted = await asyncio.to_thread(work)
    except BaseException:
        output_files.remove(settings.data_dir, job_id)
        raise
    return _accepted(ctx, accepted)


def _accepted(ctx: Context, accepted: Job) -> Response:
    location = f"{ctx.settings.base}/Task/{accepted.id}"
    params = accepted.params
    message = (
        f"Ingesting {params['file']} ({params['format']}) for {params['patient']}; its status is {location}"
    )
    body: Any = operation_outcome([Issue(message, "informational", severity="information")])
    return Response(orjson.dumps(body), 202, {"Content-Location": location}, http.FHIR_JSON)


@router.post("/Patient/{patient_id}/$ingest")
async def ingest_for_patient(patient_id: str, request: Request, ctx: Ctx) -> Response:
    return await _ingest(request, ctx, ingest.patient_reference(patient_id))


@router.post("/$ingest")
async def ingest_for_named_patient(request: Request, ctx: Ctx) -> Response:
    return await _ingest(request, ctx, None)
