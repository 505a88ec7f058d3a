"""Bulk import of NDJSON files (https://github.com/smart-on-fhir/bulk-import/blob/master/import.md).

Modelled on the Bulk Data `$import` proposal; also behind the `fhir-server import` command.

Each line is one resource. Lines are validated (`validation.validate`: the R4 StructureDefinitions) and stored in batches of
`BATCH` resources (`store/bulk_write.py`): an existing id becomes an update with a new version, the same
content again changes nothing, a line without an id gets a new one. A bad line (not JSON, not a
valid resource) is reported with its file and line number and never stops the others; a batch that
fails as a whole is retried one resource at a time, so a resource is stored completely or not at
all. Referential integrity is NOT checked: files arrive in any order, and a reference to a resource
that never arrives stays dangling. Files may be gzip-compressed (`.gz`).

As a job, the position (input file, line) is checkpointed after every batch; a resumed run starts
after the last checkpointed line and re-applying a batch stored just before a crash is a no-op.
"""

from __future__ import annotations

import gzip
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import orjson

from profiles import validator
from profiles.snapshot import compiled

from .. import model, validation
from ..auth.principal import SERVER_WRITTEN
from ..errors import FhirError, Forbidden, Invalid, Issue, operation_outcome
from ..search import stored_profile
from ..search.index import index_tuples
from ..search.types import RowSink
from ..settings import Settings
from ..store import bulk_write, planner_statistics
from ..store.outbox import WriteContext
from ..store.sql import Store, new_id
from ..warmup import bulk_collection
from . import job, output_files
from .handlers import Handler, LeaseLost
from .job import Job
from .requester import Requester

BATCH = 1000
# Once a run has written this many resources of a type, `resource` is analyzed (once per type): the
# planner statistics then know the type exists, and the batches' id lookups stay index probes.
ANALYZE_AFTER = 5 * BATCH
SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")


@dataclass
class Tally:
    """What an import did so far."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    lines: int = 0
    by_type: dict[str, int] = field(default_factory=dict)

    @property
    def stored(self) -> int:
        return self.created + self.updated + self.unchanged


@dataclass(frozen=True)
class LineError:
    """A line that could not be imported."""

    source: str
    line: int
    message: str
    expression: tuple[str, ...] = ()


def input_files(path: Path) -> list[Path]:
    """The NDJSON files of a file or directory (sorted; .ndjson, .jsonl, optionally .gz)."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))
    return [path]


def open_lines(raw: IO[bytes]) -> IO[bytes]:
    """The lines of a binary stream, gunzipped when it is gzip (by content, not by name)."""
    magic = raw.read(2)
    raw.seek(0)
    if magic == b"\x1f\x8b":
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
    return raw


def _lines(path: Path, skip: int) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as raw, open_lines(raw) as f:
        for number, line in enumerate(f, start=1):
            if number > skip:
                yield number, line


def parse_line(line: bytes) -> dict[str, Any]:
    """One NDJSON line as a validated resource with an id; Invalid describing the problem otherwise."""
    try:
        resource = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"Not valid JSON: {exc}") from None
    validation.validate(resource, parsed_from=line)
    if resource.get("resourceType") in ("Bundle",) and resource.get("type") in ("transaction", "batch"):
        raise Invalid("A transaction or batch Bundle is not a resource to import; POST it to the base")
    if resource.get("resourceType") in SERVER_WRITTEN:
        raise Forbidden(f"{resource['resourceType']} is written by the server alone: it cannot be imported")
    if "id" not in resource:
        resource["id"] = new_id()
    return dict(resource)


# A line ready to store: (source, line number, the validated resource with its id, its index rows
# as search.index.index_tuples gives them). A plain tuple because batches of them cross a process
# boundary: pickling and unpickling 1,000 tuples costs 22 us per line, 1,000 dataclasses 35 us.
Prepared = tuple[str, int, dict[str, Any], RowSink]


def _line_error(source: str, number: int, exc: FhirError) -> LineError:
    issue = exc.issues[0] if exc.issues else Issue(exc.message)
    return LineError(source, number, exc.message, tuple(issue.expression))


def prepare(chunk: list[tuple[str, int, bytes]]) -> list[Prepared | LineError]:
    """Parse, validate and index lines (blank lines dropped); CPU only, so it can run in a worker process.

    The index rows do not depend on meta.versionId / meta.lastUpdated (`_lastUpdated` is served
    from the resource table), so they are those of the resource as it will be stored.
    """
    out: list[Prepared | LineError] = []
    for source, number, line in chunk:
        if not line.strip():
            continue
        try:
            resource = parse_line(line)
        except FhirError as exc:
            out.append(_line_error(source, number, exc))
            continue
        out.append((source, number, resource, index_tuples(resource)))
    return out


def _claims_unknown_to_packages(resource: dict[str, Any]) -> bool:
    """Whether the resource claims a profile no loaded package holds (maybe one stored here)."""
    meta = resource.get("meta")
    claims = meta.get("profile") if isinstance(meta, dict) else None
    return isinstance(claims, list) and any(isinstance(c, str) and compiled(c) is None for c in claims)


class Loader:
    """Feeds prepared lines to batched writes and keeps the tally and the line errors."""

    def __init__(
        self,
        store: Store,
        on_error: Callable[[LineError], None],
        context: WriteContext = WriteContext("import"),
    ) -> None:
        self.store = store
        self.on_error = on_error
        self.context = context  # recorded with every version written (store/outbox.py)
        self.tally = Tally()
        self._batch: list[Prepared] = []
        self._keys: set[tuple[str, str]] = set()
        self._written: dict[str, int] = {}  # resources written per type, until ANALYZE_AFTER
        self._unsynced = False  # batches were committed without waiting for the WAL flush

    def add(self, source: str, number: int, line: bytes) -> bool:
        """One line (blank lines are skipped); True when it completed a batch, which was written."""
        flushed = False
        for item in prepare([(source, number, line)]):
            flushed = self.add_prepared(item) or flushed
        return flushed

    def add_prepared(self, item: Prepared | LineError) -> bool:
        """One prepared line; True when it completed a batch, which was written."""
        self.tally.lines += 1
        if isinstance(item, LineError):
            self.tally.failed += 1
            self.on_error(item)
            return False
        if _claims_unknown_to_packages(item[2]):
            problem = self._stored_profile_problem(item[2])
            if problem is not None:
                self._error(item[0], item[1], problem)
                return False
        key = (item[2]["resourceType"], item[2]["id"])
        if key in self._keys:  # the same resource twice: store the first before the second
            self.flush()
        self._batch.append(item)
        self._keys.add(key)
        if len(self._batch) >= BATCH:
            self.flush()
            return True
        return False

    def _stored_profile_problem(self, resource: dict[str, Any]) -> FhirError | None:
        """A line claiming a profile stored on the server is checked against it here, in the main
        process (the preparing processes have no database): what a REST write of it would say."""
        with self.store.read() as tx:
            found = validator.issues(resource, stored=lambda url: stored_profile.find(tx, url))
        errors = [i for i in found if i.severity == "error"]
        return Invalid(errors[0].message, issues=errors) if errors else None

    def _error(self, source: str, number: int, exc: FhirError) -> None:
        self.tally.failed += 1
        self.on_error(_line_error(source, number, exc))

    def _count(self, resource: dict[str, Any], outcome: str) -> None:
        setattr(self.tally, outcome, getattr(self.tally, outcome) + 1)
        rtype = resource["resourceType"]
        self.tally.by_type[rtype] = self.tally.by_type.get(rtype, 0) + 1

    def finish(self) -> None:
        """Write the pending batch and wait until everything written is durable."""
        self.flush()
        if self._unsynced:
            bulk_write.sync(self.store)
            self._unsynced = False

    def flush(self) -> None:
        """Write the pending batch (one by one if the batch fails as a whole); committed without
        waiting for the WAL flush, so `finish()` (or any later synchronous commit) makes it durable."""
        batch, self._batch, self._keys = self._batch, [], set()
        if not batch:
            return
        try:
            outcomes = bulk_write.write(
                self.store, [p[2] for p in batch], [p[3] for p in batch], context=self.context, durable=False
            )
            self._unsynced = True
        except Exception:
            for source, number, resource, index in batch:
                try:
                    (outcome,) = bulk_write.write(
                        self.store, [resource], [index], context=self.context, durable=False
                    )
                    self._unsynced = True
                except FhirError as exc:
                    self._error(source, number, exc)
                except Exception as exc:  # e.g. a value too long for a column
                    message = f"Could not store the resource: {type(exc).__name__}"
                    self._error(source, number, Invalid(message))
                else:
                    self._count(resource, outcome)
            return
        for p, outcome in zip(batch, outcomes, strict=True):
            self._count(p[2], outcome)
        self._analyze_new_types(batch)

    def _analyze_new_types(self, batch: list[Prepared]) -> None:
        crossed = False
        for p in batch:
            rtype = p[2]["resourceType"]
            before = self._written.get(rtype, 0)
            if before < ANALYZE_AFTER:
                self._written[rtype] = before + 1
                crossed = crossed or before + 1 == ANALYZE_AFTER
        if crossed:
            planner_statistics.analyze(self.store, ("resource",))


def error_outcome(error: LineError) -> dict[str, Any]:
    """The OperationOutcome reporting a bad line."""
    where = f"{error.source} line {error.line}: {error.message}"
    return operation_outcome([Issue(where, "invalid", error.expression)], default_code="invalid")


# ---------------------------------------------------------------- kick-off


def _local_path(url: str, allowed: Path) -> Path:
    path_text = url[len("file://") :] if url.startswith("file://") else url
    if not path_text.startswith("/"):
        raise Invalid(f"input url '{url}' must be file:///absolute/path or an absolute path", "input.url")
    path = Path(path_text).resolve()
    root = Path(allowed).resolve()
    if not path.is_relative_to(root):
        raise Invalid(f"input url '{url}' is outside the directory this server imports from", "input.url")
    if not path.is_file():
        raise Invalid(f"input url '{url}' is not a file on this server", "input.url")
    return path


def inputs_from_parameters(body: Any, allowed: Path | None) -> list[dict[str, Any]]:
    """The inputs of a `$import` Parameters resource: `input` parts with `url` (a local file under
    `allowed`) and optional `type`; `inputFormat`, when given, must be application/fhir+ndjson."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise Invalid("$import takes a Parameters resource or an application/fhir+ndjson body", "Parameters")
    inputs: list[dict[str, Any]] = []
    for param in body.get("parameter") or []:
        name = param.get("name") if isinstance(param, dict) else None
        if name == "inputFormat":
            fmt = param.get("valueCode") or param.get("valueString")
            if fmt not in ("application/fhir+ndjson", "application/ndjson", "ndjson"):
                raise Invalid(f"Unsupported inputFormat '{fmt}'", "inputFormat")
        elif name == "input":
            parts = {p.get("name"): p for p in param.get("part") or [] if isinstance(p, dict)}
            url_part = parts.get("url") or {}
            url = url_part.get("valueUrl") or url_part.get("valueUri") or url_part.get("valueString")
            if not isinstance(url, str):
                raise Invalid("Each input needs a url part", "input.url")
            if allowed is None:
                raise Invalid(
                    "This server does not import from files (FHIR_BULK_IMPORT_DIR is not set)", "input"
                )
            type_part = parts.get("type") or {}
            rtype = type_part.get("valueCode") or type_part.get("valueString")
            if rtype is not None and not model.is_resource_type(rtype):
                raise Invalid(f"input type '{rtype}' is not a resource type", "input.type")
            inputs.append({"url": url, "path": str(_local_path(url, allowed)), "type": rtype})
        elif name not in ("inputSource", "storageDetail", "mode"):
            raise Invalid(f"Unsupported $import parameter '{name}'", str(name))
    if not inputs:
        raise Invalid("$import needs at least one input", "input")
    return inputs


# ---------------------------------------------------------------- as a job


class _Run:
    """One run of an import job: the error file, the finished inputs, and checkpoints."""

    def __init__(
        self, store: Store, settings: Settings, current: Job, owner: str, alive: Callable[[], bool]
    ) -> None:
        self.store, self.job, self.owner, self.alive = store, current, owner, alive
        self.inputs: list[dict[str, Any]] = current.params["inputs"]
        self.progress: dict[str, Any] = dict(current.progress)
        directory = output_files.job_dir(settings.data_dir, current.id)
        self.errors = output_files.PartWriter(
            directory, "OperationOutcome", "OperationOutcome", 1_000_000, self.progress.get("errors")
        )
        self.done: list[dict[str, Any]] = list(current.outputs)

    def checkpoint(self, index: int, line: int, tally: Tally) -> None:
        """Sync the error file and record the position; LeaseLost when the job is no longer ours.

        The checkpoint commits synchronously, so the batches before it (committed without waiting
        for the WAL flush) are durable before the position that counts them is."""
        self.errors.sync()
        counts = {"created": tally.created, "updated": tally.updated, "unchanged": tally.unchanged}
        ok = self.alive() and job.checkpoint(
            self.store,
            self.job.id,
            self.owner,
            progress={
                "input_index": index,
                "line": line,
                "errors": self.errors.state(),
                "failed": tally.failed,
                **counts,
            },
            progress_text=f"input {min(index + 1, len(self.inputs))}/{len(self.inputs)}: "
            f"{tally.stored} stored, {tally.failed} failed",
            outputs=self.done,
            errors=[],
        )
        if not ok:
            self.errors.abandon()
            raise LeaseLost(self.job.id)

    def load(self, index: int) -> None:
        """Import one input, from the checkpointed line when the run resumes inside it."""
        item = self.inputs[index]
        context = WriteContext.of(f"import:{self.job.id}", Requester.of_row(self.job))
        loader = Loader(self.store, lambda e: self.errors.write(orjson.dumps(error_outcome(e))), context)
        skip = 0
        if index == int(self.progress.get("input_index", 0)):
            skip = int(self.progress.get("line", 0))
            for name in ("created", "updated", "unchanged", "failed"):
                setattr(loader.tally, name, int(self.progress.get(name, 0)))
        last = time.monotonic()
        for number, line in _lines(Path(item["path"]), skip):
            flushed = loader.add(item["url"], number, line)
            if flushed or time.monotonic() - last > 2.0:
                loader.flush()
                self.checkpoint(index, number, loader.tally)
                last = time.monotonic()
        loader.flush()
        tally = loader.tally
        self.done.append(
            {
                "type": item.get("type") or ",".join(sorted(tally.by_type)) or "Resource",
                "inputUrl": item["url"],
                "count": tally.stored,
                "created": tally.created,
                "updated": tally.updated,
                "unchanged": tally.unchanged,
                "failed": tally.failed,
            }
        )
        self.checkpoint(index + 1, 0, Tally())


def run(store: Store, settings: Settings, current: Job, owner: str, alive: Callable[[], bool]) -> None:
    """Import the job's inputs from its checkpoint on; LeaseLost when the job is no longer ours."""
    state = _Run(store, settings, current, owner, alive)
    with bulk_collection():
        for index in range(int(state.progress.get("input_index", 0)), len(state.inputs)):
            state.load(index)
    state.errors.close()
    planner_statistics.refresh(store, planner_statistics.ALL_TABLES)
    finished = alive() and job.complete(
        store,
        current.id,
        owner,
        outputs=state.done,
        errors=state.errors.finished,
        ttl_seconds=settings.bulk_file_ttl_seconds,
    )
    if not finished:
        raise LeaseLost(current.id)


HANDLER = Handler("import", run)


# ---------------------------------------------------------------- from the command line


def _chunks(
    path: Path, raw: IO[bytes], lines: IO[bytes]
) -> Iterator[tuple[list[tuple[str, int, bytes]], int]]:
    chunk: list[tuple[str, int, bytes]] = []
    for number, line in enumerate(lines, start=1):
        chunk.append((str(path), number, line))
        if len(chunk) >= BATCH:
            yield chunk, raw.tell()
            chunk = []
    if chunk:
        yield chunk, raw.tell()


def load(
    store: Store,
    path: Path,
    *,
    on_error: Callable[[LineError], None],
    on_progress: Callable[[str, int, int, Tally], None] | None = None,
    pool: Executor | None = None,
) -> Tally:
    """Import a file or every NDJSON file of a directory; `on_progress(file, bytes read, size, tally)`.

    With `pool` (e.g. a process pool), lines are prepared there (`prepare`), a few batches ahead,
    while this process writes.
    """
    with bulk_collection():
        return _load(store, path, on_error, on_progress, pool)


def _load(
    store: Store,
    path: Path,
    on_error: Callable[[LineError], None],
    on_progress: Callable[[str, int, int, Tally], None] | None,
    pool: Executor | None,
) -> Tally:
    loader = Loader(store, on_error)
    ahead = 4 * getattr(pool, "_max_workers", 1)  # enough queued that a preparing process never waits
    for file in input_files(path):
        size = file.stat().st_size
        with open(file, "rb") as raw, open_lines(raw) as f:
            pending: deque[tuple[Future[list[Prepared | LineError]], int]] = deque()
            for chunk, position in _chunks(file, raw, f):
                if pool is None:
                    for item in prepare(chunk):
                        loader.add_prepared(item)
                    if on_progress is not None:
                        on_progress(str(file), position, size, loader.tally)
                    continue
                pending.append((pool.submit(prepare, chunk), position))
                while len(pending) > ahead or (pending and pending[0][0].done()):
                    future, done_at = pending.popleft()
                    for item in future.result():
                        loader.add_prepared(item)
                    if on_progress is not None:
                        on_progress(str(file), done_at, size, loader.tally)
            while pending:
                future, done_at = pending.popleft()
                for item in future.result():
                    loader.add_prepared(item)
        loader.finish()
        if on_progress is not None:
            on_progress(str(file), size, size, loader.tally)
    planner_statistics.refresh(store, planner_statistics.ALL_TABLES)
    return loader.tally
