"""`$ingest` and `fhir-server ingest`: a health data file through the ingest adapters into the server's validated transaction path (https://hl7.org/fhir/R4/http.html#transaction, https://hl7.org/fhir/R4/async.html).

The adapters (:mod:`ingest`) turn a file into transaction Bundles of conditional creates; here each
Bundle goes through :func:`fhir_server.interactions.transaction.transaction` (in this process) or
is POSTed to another server (:func:`ingest.remote.post_bundles`), and a :class:`Tally` counts what
was created, what was already there and what went wrong. Over HTTP the work is a job on the job
queue (:mod:`fhir_server.jobs.queue`: Celery on Redis, or threads in this process) whose status is
a Task (:mod:`fhir_server.operations.ingest_task`); re-running a job is harmless, as every entry is
a conditional create, and a resumed job skips the batches its checkpoint says are done.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from ingest.pipeline import IngestRun, UnknownFormat, detect_format, get_adapter, iter_file
from ingest.remote import RemoteReport, post_bundles
from ingest.report import Problem

from .. import instant
from ..errors import FhirError, Forbidden, Invalid
from ..interactions import read
from ..interactions.context import Context
from ..interactions.transaction import transaction
from ..jobs import job, output_files
from ..jobs.job import Job
from ..jobs.requester import Requester
from ..settings import Settings
from ..store.sql import Store
from . import ingest_task
from .ingest_task import TaskState, TaskStatus

KIND = "ingest"
DEFAULT_BATCH_SIZE = 500
TASK_UPDATE_SECONDS = 5.0  # a running job rewrites its Task's counts at most this often
# What an ingest may write: the caller needs create and search on each of them. The job itself and
# its Task are written by the server (principal None) once this check has passed.
WRITTEN_TYPES = (
    "Observation",
    "Device",
    "Provenance",
    "DocumentReference",
    "DiagnosticReport",
    "ImagingStudy",
)
# Upload media type -> (format, file name extension); "auto" means: look at the content.
MEDIA_TYPES: dict[str, tuple[str, str]] = {
    "text/csv": ("csv", ".csv"),
    "application/csv": ("csv", ".csv"),
    "text/tab-separated-values": ("csv", ".tsv"),
    "application/pdf": ("lab-report", ".pdf"),
    "image/png": ("lab-report", ".png"),
    "image/jpeg": ("lab-report", ".jpg"),
    "image/tiff": ("lab-report", ".tif"),
    "application/dicom": ("dicom", ".dcm"),
    "application/zip": ("apple-health", ".zip"),
    "application/x-zip-compressed": ("apple-health", ".zip"),
    "application/xml": ("apple-health", ".xml"),
    "text/xml": ("apple-health", ".xml"),
    "application/x-ndjson": ("open-mhealth", ".ndjson"),
    "application/json": ("auto", ".json"),
    "application/octet-stream": ("auto", ""),
}
_PATIENT = re.compile(r"(?:Patient/)?([A-Za-z0-9\-.]{1,64})")
_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})")
_UNSAFE = re.compile(r"[^A-Za-z0-9._\- ()+]")


# ---------------------------------------------------------------- arguments


def patient_reference(text: str) -> str:
    """``Patient/123`` from ``Patient/123`` or ``123``; :class:`Invalid` for anything else."""
    m = _PATIENT.fullmatch(text.strip())
    if m is None:
        raise Invalid(f"'{text}' is not a Patient reference (Patient/<id>)", "patient")
    return f"Patient/{m[1]}"


def parse_timezone(text: str) -> tzinfo:
    """A zone for source times without one: ``Z``/``UTC``, an offset ``+01:00``, or an IANA name."""
    value = text.strip()
    if value in ("Z", "UTC", "utc"):
        return UTC
    m = _OFFSET.fullmatch(value)
    if m:
        sign = -1 if m[1] == "-" else 1
        return timezone(sign * timedelta(hours=int(m[2]), minutes=int(m[3])))
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(
            f"unknown time zone '{text}' (use an IANA name or an offset like +01:00)", "timezone"
        ) from None


def checked_format(fmt: str, path: Path | None = None) -> str:
    """The canonical format name (``auto`` resolved from the file); :class:`Invalid` when unknown."""
    name = fmt.strip().lower() or "auto"
    if name == "auto":
        if path is None:
            return name
        name = detect_format(path)
    try:
        return get_adapter(name).name
    except UnknownFormat as exc:
        raise Invalid(str(exc), "format") from None


def upload_format(media_type: str | None, requested: str | None) -> tuple[str, str]:
    """(format, file name extension) of an upload: the ``format`` parameter wins over the media type."""
    ctype = (media_type or "").split(";")[0].strip().lower()
    fmt, ext = MEDIA_TYPES.get(ctype, ("auto", ""))
    if requested:
        fmt = checked_format(requested)
    return fmt, ext


def upload_name(filename: str | None, ext: str) -> str:
    """A safe base name for an uploaded file (the problem report names it): no directories, no odd characters."""
    name = _UNSAFE.sub("_", Path((filename or "").replace("\\", "/")).name).strip(" .")[:120]
    return name or f"upload{ext}"


# ---------------------------------------------------------------- counting


@dataclass
class Tally:
    """What one ingest did: batches written or refused, entries created or already present, problems.

    ``counts`` and ``read_problems`` are the adapter's own (records read, rejected...), shared
    with the run; ``refused`` are the batches the server would not take.
    """

    file: str
    format: str
    counts: Counter[str] = field(default_factory=Counter)
    read_problems: list[Problem] = field(default_factory=list)
    refused: list[Problem] = field(default_factory=list)
    seen: int = 0  # batches handled, written or refused (a resumed job skips these)
    bundles: int = 0
    failed_bundles: int = 0
    entries: int = 0
    created: int = 0
    existing: int = 0

    @property
    def problems(self) -> list[Problem]:
        return [*self.read_problems, *self.refused]

    @property
    def records(self) -> int:
        return self.counts["records"]

    @property
    def ingested(self) -> bool:
        """True when anything was written or found already present."""
        return self.created + self.existing > 0

    @property
    def not_listed(self) -> int:
        return self.counts["problems_not_listed"]

    def output_counts(self) -> dict[str, int]:
        """The numbers a Task reports."""
        return {
            "records": self.records,
            "resources": self.entries,
            "created": self.created,
            "existing": self.existing,
            "rejected": self.counts["rejected"],
            "failed-batches": self.failed_bundles,
            "problems": len(self.problems) + self.not_listed,
        }

    def progress_text(self) -> str:
        return (
            f"{self.records} records read, {self.entries} resources written "
            f"({self.created} created, {self.existing} already present), "
            f"{len(self.problems) + self.not_listed} problems"
        )

    def checkpoint(self) -> dict[str, Any]:
        """The server-side part of the tally (a resumed job reads the file again for the rest)."""
        return {
            "seen": self.seen,
            "bundles": self.bundles,
            "failed_bundles": self.failed_bundles,
            "entries": self.entries,
            "created": self.created,
            "existing": self.existing,
            "refused": [[p.location, p.message] for p in self.refused],
        }

    def restore(self, saved: Mapping[str, Any]) -> None:
        for name in ("seen", "bundles", "failed_bundles", "entries", "created", "existing"):
            setattr(self, name, int(saved.get(name, 0)))
        self.refused = [Problem(self.file, str(loc), str(msg)) for loc, msg in saved.get("refused", [])]


def open_run(
    path: Path,
    fmt: str,
    patient_ref: str,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    default_tz: tzinfo | None = None,
    options: Mapping[str, Any] | None = None,
) -> tuple[IngestRun, Tally]:
    """The streaming adapter run for a file and the tally that shares its counts and problems."""
    run = iter_file(path, fmt, patient_ref, batch_size=batch_size, default_tz=default_tz, options=options)
    tally = Tally(file=run.ctx.file, format=run.source, counts=run.counts, read_problems=run.problems)
    return run, tally


def _count_response(tally: Tally, response: Mapping[str, Any]) -> None:
    for entry in response.get("entry", []):
        status = str((entry.get("response") or {}).get("status", ""))
        if status.startswith("201"):
            tally.created += 1
        elif status.startswith("200"):
            tally.existing += 1


def _refusal(error: FhirError) -> str:
    where = [e for issue in error.issues for e in issue.expression]
    text = "; ".join(issue.message for issue in error.issues) or error.message
    return text + (f" (at {', '.join(where)})" if where else "")


def write_bundles(
    ctx: Context,
    run: IngestRun,
    tally: Tally,
    *,
    on_bundle: Callable[[Tally], None] | None = None,
) -> Tally:
    """Perform each Bundle of the run as a transaction on this server, in order, counting into ``tally``.

    A Bundle the server refuses (validation, a reference to nothing...) is a problem naming the
    batch; being a transaction, none of its entries is stored, and the next batch still runs.
    Batches the tally has already ``seen`` (a resumed job) are skipped.
    """
    skip = tally.seen
    for n, bundle in enumerate(run, 1):
        if n <= skip:
            continue
        size = len(bundle.get("entry", []))
        try:
            response = transaction(ctx, bundle)
        except FhirError as exc:
            tally.failed_bundles += 1
            tally.refused.append(
                Problem(
                    tally.file,
                    f"batch {n}",
                    f"the server refused this batch of {size} entries, so none of them was stored: "
                    + _refusal(exc),
                )
            )
        else:
            tally.bundles += 1
            tally.entries += size
            _count_response(tally, response)
        tally.seen = n
        if on_bundle is not None:
            on_bundle(tally)
    return tally


def send_bundles(
    run: IngestRun,
    tally: Tally,
    base_url: str,
    *,
    client: httpx.Client | None = None,
    headers: Mapping[str, str] | None = None,
    on_bundle: Callable[[Tally], None] | None = None,
) -> Tally:
    """POST each Bundle of the run to another server's base URL, counting into ``tally``."""

    def progress(report: RemoteReport, bundle: Mapping[str, Any]) -> None:
        if report.failed == tally.failed_bundles:
            tally.entries += len(bundle.get("entry", []))
        tally.seen += 1
        tally.bundles, tally.failed_bundles = report.posted, report.failed
        tally.created, tally.existing = report.created, report.existing
        if on_bundle is not None:
            on_bundle(tally)

    report = post_bundles(run, base_url, client=client, headers=headers, progress=progress)
    for error in report.errors:
        batch, _, message = error.partition(": ")
        tally.refused.append(
            Problem(tally.file, batch.replace("bundle", "batch"), f"the server refused this batch: {message}")
        )
    return tally


# ---------------------------------------------------------------- $ingest kick-off


def check_access(principal: Any, patient_ref: str) -> None:
    """403 unless the caller may create and search every type an ingest writes, for this patient."""
    if principal is None:
        return
    from ..auth.principal import Access, decide

    for rtype in WRITTEN_TYPES:
        access = decide(principal, "operation", rtype, needs="cs")
        if not isinstance(access, Access):
            raise Forbidden(f"$ingest needs create and search on {rtype}: {access.reason}")
        if not any(not g.query and g.compartment in (None, patient_ref) for g in access.grants):
            raise Forbidden(f"$ingest needs create and search on {rtype} for {patient_ref}")


def check_patient(ctx: Context, patient_ref: str) -> None:
    """404 unless the patient exists (everything ingested refers to it)."""
    with ctx.store.read() as tx:
        read.read(tx, "Patient", patient_ref.split("/", 1)[1])


def upload_path(settings: Settings, job_id: str, name: str) -> Path:
    """Where an uploaded file waits for its job (removed with the job's files)."""
    return output_files.job_dir(settings.data_dir, job_id) / "upload" / name


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
) -> TaskState:
    """Check the request, record the job and its Task (``requested``); the caller submits the job.

    404 when the patient does not exist; 400 for an unknown format or time zone; 429 when the
    requester already has too many jobs running. The upload is removed when the request is refused.
    The job, and so its Task's read exception, belongs to `requester` (auth/enforce.py check_read).
    """
    try:
        check_patient(ctx, patient_ref)
        resolved = checked_format(fmt, upload)
        if timezone_name:
            parse_timezone(timezone_name)
        state = TaskState(job_id=job_id, patient_ref=patient_ref, file=upload.name, format=resolved)
        job.create(
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
                "authored": state.authored,
            },
            transaction_time=instant.now_us(),
            max_active=ctx.settings.bulk_max_active_per_client,
            retry_after=ctx.settings.bulk_retry_after_seconds,
            job_id=job_id,
        )
    except BaseException:
        output_files.remove(ctx.settings.data_dir, job_id)
        raise
    try:  # the Task is the server's record of the job: written as the server, not the caller
        server = replace(ctx, principal=None)
        ingest_task.save(server, ingest_task.task(state, "requested", progress="waiting to start"))
    except BaseException:
        job.cancel(ctx.store, job_id)
        output_files.remove(ctx.settings.data_dir, job_id)
        raise
    return state


# ---------------------------------------------------------------- the job


def _now() -> str:
    return instant.to_fhir(instant.now_us())


def _task(
    state: TaskState, status: TaskStatus, tally: Tally | None, reason: str | None = None
) -> dict[str, Any]:
    if tally is None:
        return ingest_task.task(state, status, reason=reason)
    return ingest_task.task(
        state,
        status,
        counts=tally.output_counts(),
        issues=[p.as_issue() for p in tally.problems],
        not_listed=tally.not_listed,
        progress=tally.progress_text(),
        reason=reason,
    )


def _state(current: Job) -> TaskState:
    """What the job's Task says about it, from the job's params and progress."""
    params = current.params
    return TaskState(
        job_id=current.id,
        patient_ref=params["patient"],
        file=params["file"],
        format=params["format"],
        authored=params.get("authored") or _now(),
        started=current.progress.get("started") or _now(),
    )


def given_up(store: Store, settings: Settings, current: Job, reason: str) -> None:
    """The job failed outside its own run (its worker kept dying): its Task ends ``failed`` too."""
    state = _state(current)
    state.ended = _now()
    ingest_task.save(Context(store=store, settings=settings), _task(state, "failed", None, reason))
    output_files.remove(settings.data_dir, current.id)


def run(store: Store, settings: Settings, current: Job, owner: str, alive: Callable[[], bool]) -> None:
    """Run (or resume) one `$ingest` job: write the file's Bundles, keep the Task up to date.

    The Task ends ``completed`` when anything was ingested (problems or not), ``failed`` when
    nothing could be, or when the job broke (the reason is its ``statusReason``).
    """
    from ..jobs.export import LeaseLost

    params = current.params
    ctx = Context(store=store, settings=settings)
    saved = dict(current.progress)
    state = _state(current)
    tally: Tally | None = None
    try:
        ingest_task.save(ctx, ingest_task.task(state, "in-progress", progress="reading the file"))
        tz = parse_timezone(params["timezone"]) if params.get("timezone") else None
        ingest_run, tally = open_run(Path(params["path"]), state.format, state.patient_ref, default_tz=tz)
        tally.restore(saved)
        last_update = time.monotonic()

        def on_bundle(t: Tally) -> None:
            nonlocal last_update
            if not alive() or not job.checkpoint(
                store,
                current.id,
                owner,
                progress={**t.checkpoint(), "started": state.started},
                progress_text=t.progress_text(),
                outputs=[],
                errors=[],
            ):
                raise LeaseLost(current.id)
            if time.monotonic() - last_update >= TASK_UPDATE_SECONDS:
                ingest_task.save(ctx, _task(state, "in-progress", t))
                last_update = time.monotonic()

        write_bundles(ctx, ingest_run, tally, on_bundle=on_bundle)
    except LeaseLost:
        after = job.get(store, current.id)
        if after is not None and after.status == "cancelled":
            state.ended = _now()
            ingest_task.save(ctx, _task(state, "cancelled", tally, "the job was cancelled"))
        raise
    except Exception as exc:
        state.ended = _now()
        reason = f"the ingest broke off: {type(exc).__name__}: {exc}"[:1000]
        ingest_task.save(ctx, _task(state, "failed", tally, reason))
        output_files.remove(settings.data_dir, current.id)
        raise
    state.ended = _now()
    if tally.ingested:
        ingest_task.save(ctx, _task(state, "completed", tally))
    else:
        ingest_task.save(ctx, _task(state, "failed", tally, "nothing in the file could be ingested"))
    output_files.remove(settings.data_dir, current.id)
    finished = job.complete(
        store, current.id, owner, outputs=[], errors=[], ttl_seconds=settings.bulk_file_ttl_seconds
    )
    if not finished:
        raise LeaseLost(current.id)
