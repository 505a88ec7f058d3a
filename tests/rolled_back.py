"""Test isolation by a rolled-back transaction (https://docs.sqlalchemy.org/en/20/orm/session_transaction.html#joining-a-session-into-an-external-transaction-such-as-for-test-suites).

A test marked `rolled_back` gets a `store` whose every unit of work (read, write, transact) is a
SAVEPOINT inside ONE outer transaction on ONE connection, which is rolled back when the test ends:
nothing it wrote survives and no TRUNCATE is needed. Only for tests that use one thread and reach the
database through the store (a second connection, a job thread or an HTTP client cannot see the outer
transaction's rows); the others keep the `store` that empties the tables first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

from fhir_server.store.autoanalyze import Changes
from fhir_server.store.sql import Store


class _NoAnalysis:
    """Nothing is committed until the test ends (and then rolled back): nothing to analyze."""

    def committed(self, changes: Changes) -> None:
        return None


class RolledBackStore(Store):
    """A Store on one connection whose units of work are savepoints of the test's transaction."""

    def __init__(self, engine: Engine, conn: Connection, **kwargs: object) -> None:
        super().__init__(engine, **kwargs)  # type: ignore[arg-type]
        self.outer = conn
        self.analyzer = _NoAnalysis()  # type: ignore[assignment]

    @contextmanager
    def _read_connection(self) -> Iterator[Connection]:
        with self.outer.begin_nested():
            yield self.outer

    @contextmanager
    def _write_connection(self) -> Iterator[Connection]:
        with self.outer.begin_nested():
            yield self.outer


@contextmanager
def rolled_back_store(engine: Engine, **kwargs: object) -> Iterator[RolledBackStore]:
    """A RolledBackStore whose outer transaction is rolled back at the end of the block."""
    with engine.connect() as conn:
        outer = conn.begin()
        try:
            yield RolledBackStore(engine, conn, **kwargs)
        finally:
            outer.rollback()
