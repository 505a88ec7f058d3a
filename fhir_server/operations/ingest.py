"""`$ingest` and `fhir-server ingest`: a health data file through the ingest adapters into the server's validated transaction path (https://hl7.org/fhir/R4/http.html#transaction, https://hl7.org/fhir/R4/async.html).

The adapters (:mod:`ingest`) turn a file into transaction Bundles of conditional creates; here each
Bundle goes through :func:`fhir_server.interactions.transaction.transaction` (in this process) or
is POSTed to another server (:func:`ingest.remote.post_bundles`), and a :class:`Tally` counts what
was created, what was already there and what went wrong. Over HTTP the work is a job on the job
queue (:mod:`fhir_server.operations.ingest_job`) whose status is a Task derived from the job
(:mod:`fhir_server.operations.ingest_task`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from ingest.pipeline import IngestRun, UnknownFormat, detect_format, get_adapter, iter_file
from ingest.remote import RemoteReport, post_bundles
from ingest.report import Problem

from ..errors import FhirError, Forbidden, Invalid
from ..interactions import read
from ..interactions.context import Context
from ..interactions.transaction import transaction
from ..jobs import output_files
from ..settings import Settings

DEFAULT_BATCH_SIZE = 500
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


def refusal(error: FhirError) -> str:
    """What a refusal says, with where (for the problem report)."""
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
                    + refusal(exc),
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
    from ..auth import enforce
    from ..auth.principal import Access

    for rtype in WRITTEN_TYPES:
        access = enforce.operation(principal, rtype, needs="cs")
        if not isinstance(access, Access):
            raise Forbidden(f"$ingest needs create and search on {rtype}: {access.reason}")
        if not any(not g.query and g.compartment in (None, patient_ref) for g in access.grants):
            raise Forbidden(f"$ingest needs create and search on {rtype} for {patient_ref}")


def write_grants(principal: Any) -> dict[str, list[dict[str, Any]]] | None:
    """The caller's grants to create and search each type an ingest writes, as recorded with its
    job (JSON): only the restricted types; None when security is off (``check_access`` passed)."""
    if principal is None:
        return None
    from ..auth import enforce
    from ..auth.principal import Access

    recorded: dict[str, list[dict[str, Any]]] = {}
    for rtype in WRITTEN_TYPES:
        access = enforce.operation(principal, rtype, needs="cs")
        if not isinstance(access, Access):
            raise Forbidden(f"$ingest needs create and search on {rtype}: {access.reason}")
        if not access.unrestricted:
            recorded[rtype] = [
                {"compartment": g.compartment, "query": [list(p) for p in g.query]} for g in access.grants
            ]
    return recorded


def grants_from(recorded: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The ``Access`` per type of grants recorded by :func:`write_grants` (None: unrestricted)."""
    if recorded is None:
        return None
    from ..auth.principal import Access, Grant

    return {
        rtype: Access(
            "cs",
            tuple(Grant(g["compartment"], tuple((str(k), str(v)) for k, v in g["query"])) for g in grants),
        )
        for rtype, grants in recorded.items()
    }


def check_patient(ctx: Context, patient_ref: str) -> None:
    """404 unless the patient exists (everything ingested refers to it)."""
    with ctx.store.read() as tx:
        read.read(tx, "Patient", patient_ref.split("/", 1)[1])


def upload_path(settings: Settings, job_id: str, name: str) -> Path:
    """Where an uploaded file waits for its job (removed with the job's files)."""
    return output_files.job_dir(settings.data_dir, job_id) / "upload" / name
