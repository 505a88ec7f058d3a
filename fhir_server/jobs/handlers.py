"""The job kinds a worker can run, registered by kind at start-up (https://hl7.org/fhir/uv/bulkdata/STU2/export.html#bulk-data-status-request).

A job kind is one module with a `JobHandler` (usually a `Handler(kind, run, ...)`), registered once by
`fhir_server.job_kinds.register()`, which the API (`create_app`) and `fhir-server worker` both call.
The worker (`worker.py`) looks a job's handler up here and knows no kind itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..settings import Settings
from ..store.sql import Store
from .job import Job


class LeaseLost(Exception):
    """The job was cancelled or taken over by another worker: stop without touching it."""


def _nothing(store: Store, settings: Settings, current: Job, reason: str) -> None:
    return None


class JobHandler(Protocol):
    """What a job kind does: run (or resume) a claimed job, and clean up after a failure it did not
    see through (its run raised, or its worker kept dying)."""

    @property
    def kind(self) -> str: ...

    @property
    def status_type(self) -> str | None:
        """The resource type of the job's status resource (a `Task` read by its requester), if any."""
        ...

    def run(
        self, store: Store, settings: Settings, current: Job, owner: str, alive: Callable[[], bool]
    ) -> None:
        """Run the claimed job to completion (`job.complete`); raise `LeaseLost` when `alive()` turns False."""
        ...

    def given_up(self, store: Store, settings: Settings, current: Job, reason: str) -> None:
        """The job has just been failed with `reason` outside its own run."""
        ...


Runner = Callable[[Store, Settings, Job, str, Callable[[], bool]], None]
GivenUp = Callable[[Store, Settings, Job, str], None]


@dataclass(frozen=True)
class Handler:
    """A job kind from plain functions (`given_up` does nothing by default)."""

    kind: str
    run: Runner
    given_up: GivenUp = _nothing
    status_type: str | None = None


_HANDLERS: dict[str, JobHandler] = {}


def register(handler: JobHandler) -> None:
    """Register the handler of its kind (registering the same handler again is harmless)."""
    known = _HANDLERS.get(handler.kind)
    if known is not None and known is not handler:
        raise ValueError(f"Job kind '{handler.kind}' is already registered")
    _HANDLERS[handler.kind] = handler


def unregister(kind: str) -> None:
    """Forget a job kind (tests that register their own)."""
    _HANDLERS.pop(kind, None)


def handler_for(kind: str) -> JobHandler:
    """The handler of a job kind; KeyError naming the kind when none is registered."""
    try:
        return _HANDLERS[kind]
    except KeyError:
        raise UnknownKind(f"no handler is registered for job kind '{kind}'") from None


class UnknownKind(KeyError):
    """A job of a kind no handler is registered for (an operator's configuration problem)."""

    def __str__(self) -> str:
        return str(self.args[0])


def find(kind: str) -> JobHandler | None:
    """The handler of a job kind, None when none is registered."""
    return _HANDLERS.get(kind)


def with_status(res_type: str) -> tuple[str, ...]:
    """The kinds whose jobs have a status resource of this type."""
    return tuple(kind for kind, h in _HANDLERS.items() if h.status_type == res_type)
