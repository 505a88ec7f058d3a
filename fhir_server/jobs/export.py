"""Running a `$export` job (https://hl7.org/fhir/uv/bulkdata/STU2/export.html).

For each resource type of the request in turn, the resources selected (`selection`) are streamed as
of the transaction time (`snapshot`) into NDJSON files of at most `bulk_file_max_resources` lines
(`output_files`), `_elements` applied. Every `bulk_checkpoint_rows` resources (or two seconds) the
files are synced and the position (type, last pk, open file state) is checkpointed on the job row;
a run that takes over a job whose worker died continues from there, so each resource is written
exactly once. With `_since`, resources deleted after it go to `deleted` files as transaction Bundles
of DELETE entries. Warnings of a lenient kick-off go to an OperationOutcome `error` file.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import orjson

from ..errors import Issue, operation_outcome
from ..search import bulk_selection as selection
from ..settings import Settings
from ..store import planner_statistics, snapshot
from ..store.sql import Store
from . import elements, job, output_files
from .handlers import Handler, LeaseLost
from .job import Job

CHECKPOINT_SECONDS = 2.0


def _deleted_line(resource_type: str, res_id: str) -> bytes:
    entry = {"request": {"method": "DELETE", "url": f"{resource_type}/{res_id}"}}
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [entry]})


def write_warnings(directory: Any, warnings: list[str]) -> list[dict[str, Any]]:
    """The OperationOutcome error file of a job's warnings (rewritten whole on every run)."""
    if not warnings:
        return []
    writer = output_files.PartWriter(directory, "OperationOutcome", "OperationOutcome", 1_000_000)
    for message in warnings:
        outcome = operation_outcome([Issue(message, "informational", severity="warning")])
        writer.write(orjson.dumps(outcome))
    writer.close()
    return writer.finished


class _Run:
    """The state of one run of an export job, and its checkpoints."""

    def __init__(
        self, store: Store, settings: Settings, current: Job, owner: str, alive: Callable[[], bool]
    ) -> None:
        self.store, self.settings, self.job, self.owner, self.alive = store, settings, current, owner, alive
        self.progress: dict[str, Any] = dict(current.progress)
        self.types: list[str] = current.params["types"]
        self.directory = output_files.job_dir(settings.data_dir, current.id)
        self.errors = write_warnings(self.directory, current.params.get("warnings", []))
        self.done: list[dict[str, Any]] = list(current.outputs)
        self.deleted = output_files.PartWriter(
            self.directory,
            "Bundle-deleted",
            "Bundle",
            settings.bulk_file_max_resources,
            self.progress.get("deleted"),
        )
        self.exported = int(self.progress.get("exported", 0))
        self.params = selection.members_then(store, current.params, current.transaction_time, settings.base)

    def checkpoint(self, index: int, after_pk: int, writer: output_files.PartWriter | None) -> None:
        """Sync the files and record the position; LeaseLost when the job is no longer ours."""
        if writer is not None:
            writer.sync()
        self.deleted.sync()
        name = self.types[index] if index < len(self.types) else "done"
        ok = self.alive() and job.checkpoint(
            self.store,
            self.job.id,
            self.owner,
            progress={
                "type_index": index,
                "after_pk": after_pk,
                "part": writer.state() if writer is not None else None,
                "deleted": self.deleted.state(),
                "exported": self.exported,
            },
            progress_text=f"{name} ({min(index + 1, len(self.types))}/{len(self.types)} types), "
            f"{self.exported} resources exported",
            outputs=self.done + (writer.finished if writer is not None else []) + self.deleted.finished,
            errors=self.errors,
        )
        if not ok:
            if writer is not None:
                writer.abandon()
            self.deleted.abandon()
            raise LeaseLost(self.job.id)

    def export_type(self, index: int) -> None:
        """Write one resource type, from the checkpoint when the run resumes inside it."""
        params, settings = self.params, self.settings
        rtype = self.types[index]
        resumed = index == int(self.progress.get("type_index", 0)) and self.progress.get("part") is not None
        writer = output_files.PartWriter(
            self.directory,
            rtype,
            rtype,
            settings.bulk_file_max_resources,
            self.progress.get("part") if resumed else None,
        )
        after = int(self.progress.get("after_pk", 0)) if resumed else 0
        keep = elements.keep_for(params.get("elements") or {}, rtype)
        snap = selection.Snapshot(self.store, self.job.transaction_time)
        conds = selection.conditions(params, rtype, settings.base, snap)
        rows, last_time = 0, time.monotonic()
        found_rows = snapshot.stream(
            self.store,
            rtype,
            conds,
            transaction_time=self.job.transaction_time,
            since=params.get("since"),
            after=after,
        )
        # Closed here when the loop stops early (LeaseLost at a checkpoint, a failed write): left to
        # the garbage collector, its three connections and their server-side cursors stayed open.
        with contextlib.closing(found_rows):
            for found in found_rows:
                if found.deleted:
                    self.deleted.write(_deleted_line(rtype, found.res_id))
                else:
                    writer.write(elements.subset(found.content, keep) if keep is not None else found.content)
                    self.exported += 1
                rows += 1
                if rows >= settings.bulk_checkpoint_rows or time.monotonic() - last_time > CHECKPOINT_SECONDS:
                    self.checkpoint(index, found.pk, writer)
                    rows, last_time = 0, time.monotonic()
        writer.close()
        self.done.extend(writer.finished)
        if writer.finished or self.deleted.count:
            self.checkpoint(index + 1, 0, None)


def run(store: Store, settings: Settings, current: Job, owner: str, alive: Callable[[], bool]) -> None:
    """Export from the job's checkpoint to the end; LeaseLost when the job is no longer ours."""
    state = _Run(store, settings, current, owner, alive)
    snapshot.settle(store, current.transaction_time, settings.bulk_snapshot_settle_seconds)
    planner_statistics.refresh(store)
    present = snapshot.present_types(store)
    for index in range(int(state.progress.get("type_index", 0)), len(state.types)):
        if state.types[index] in present:
            state.export_type(index)
    state.deleted.close()
    outputs = state.done + state.deleted.finished
    finished = alive() and job.complete(
        store,
        current.id,
        owner,
        outputs=outputs,
        errors=state.errors,
        ttl_seconds=settings.bulk_file_ttl_seconds,
    )
    if not finished:
        raise LeaseLost(current.id)


HANDLER = Handler("export", run)
