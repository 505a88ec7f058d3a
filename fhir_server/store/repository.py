"""The store's boundary: what interactions, jobs and operations may ask of it (https://hl7.org/fhir/R4/http.html).

`Repository` opens units of work (`Store` implements it); a `UnitOfWork` (`Tx`) reads the current
version, a version, the history, runs a search planned by `search/`, and writes. SQL on the store's
tables (`resource`, `resource_version`, `idx_*`) is written only in `store/`: other packages build
statements with `search/` and hand them to `run_search`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy import CursorResult, Executable

from . import fast, outbox

if TYPE_CHECKING:
    from .sql import Store, Stored, Tx

T = TypeVar("T")


class UnitOfWork(Protocol):
    """One database transaction: reads see its own writes (`Tx`)."""

    def current(self, res_type: str, res_id: str) -> Stored | None: ...

    def current_by_pks(self, pks: Iterable[int]) -> list[Stored]: ...

    def current_of_type(self, res_type: str, *, limit: int) -> list[Stored]: ...

    def version(self, res_type: str, res_id: str, version: int) -> Stored | None: ...

    def history(
        self,
        *,
        res_type: str | None = None,
        res_id: str | None = None,
        since: int | None = None,
        at: int | None = None,
        before_txn: int | None = None,
        limit: int = 50,
    ) -> list[tuple[int, Stored]]: ...

    def run_search(self, stmt: Executable, *, memory_mb: int | None = None) -> CursorResult[Any]: ...

    def create(self, resource: dict[str, Any], res_id: str | None = None, method: str = "POST") -> Stored: ...

    def update(self, prev: Stored, resource: dict[str, Any], method: str = "PUT") -> Stored: ...

    def delete(self, prev: Stored) -> Stored: ...

    def write_batch(self, batch: fast.Batch) -> set[tuple[str, str]]: ...


class Repository(Protocol):
    """Opens units of work: a read, a write, a write retried on contention (`Store`)."""

    def read(self) -> AbstractContextManager[Tx]: ...

    def write(self, context: outbox.WriteContext = ...) -> AbstractContextManager[Tx]: ...

    def transact(self, work: Callable[[Tx], T], context: outbox.WriteContext = ...) -> T: ...


if TYPE_CHECKING:  # mypy proves that the store implements its boundary

    def _implements(store: Store, tx: Tx) -> tuple[Repository, UnitOfWork]:
        return store, tx
