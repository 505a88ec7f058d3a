"""Writes through any path bring a background ANALYZE (https://www.postgresql.org/docs/15/sql-analyze.html)."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from fhir_server.interactions.context import Context
from fhir_server.interactions.transaction import transaction
from fhir_server.settings import Settings
from fhir_server.store import autoanalyze, bulk_write, fast
from fhir_server.store.sql import Store
from tests import factories
from tests.conftest import BASE

WAIT = 60.0  # seconds the background pass may take on a loaded machine


def _analyzed_rows(store: Store, table: str, since: float) -> int | None:
    """Rows the last ANALYZE of `table` saw if it ran after `since` (epoch seconds), else None."""
    with store.engine.connect() as conn:
        if store.sqlite:
            found = conn.execute(
                text("SELECT max(CAST(stat AS INTEGER)) FROM sqlite_stat1 WHERE tbl = :t"), {"t": table}
            ).scalar()
            return None if found is None else int(found)
        row = conn.execute(
            text(
                "SELECT c.reltuples, extract(epoch FROM s.last_analyze) FROM pg_class c JOIN pg_stat_user_tables s"
                " ON s.relid = c.oid WHERE c.relname = :t AND s.schemaname = current_schema()"
            ),
            {"t": table},
        ).one()
        return int(row[0]) if row[1] is not None and float(row[1]) >= since else None


def _fresh(store: Store) -> autoanalyze.Analyzer:
    """A new analyzer for this store, so counts of earlier tests on the shared engine do not matter
    (and on SQLite no statistics of theirs)."""
    if store.sqlite:
        with store.engine.begin() as conn:
            if conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").first():
                conn.exec_driver_sql("DELETE FROM sqlite_stat1")
    store.analyzer = autoanalyze.Analyzer(store.engine)
    return store.analyzer


def test_changes_count_rows_per_table_and_resources_per_type() -> None:
    changes = autoanalyze.Changes()
    index: Any = {"token": [("a",), ("b",)], "string": [("c",)]}
    batch = fast.Batch(
        creates=[fast.NewResource("Patient", "1", 0, b"", index, "POST")],
        versions=[(7, "Observation", "2", 2, 0, False, "PUT", b"")],
        reindex=[(7, {"token": [("d",)]})],
    )
    changes.add(batch)
    assert changes.types == {"Patient": 1, "Observation": 1}
    assert changes.rows == {"resource": 2, "resource_version": 2, "idx_token": 3, "idx_string": 1}


def test_a_transaction_bundle_of_many_resources_is_analyzed_in_the_background(store: Store) -> None:
    analyzer = _fresh(store)
    started = time.time()
    entries = [
        {"resource": factories.patient(), "request": {"method": "POST", "url": "Patient"}}
        for _ in range(autoanalyze.BASE_ROWS + 100)
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    transaction(Context(store, Settings(base_url=BASE)), orjson.loads(orjson.dumps(bundle)))
    assert analyzer.wait_idle(WAIT)
    assert (_analyzed_rows(store, "resource", started) or 0) >= autoanalyze.BASE_ROWS + 100


def test_many_single_creates_are_analyzed_once_they_add_up(store: Store) -> None:
    analyzer = _fresh(store)
    started = time.time()
    for _ in range(autoanalyze.BASE_ROWS + 50):
        with store.write() as tx:
            tx.create(factories.patient())
    assert analyzer.wait_idle(WAIT)
    assert (_analyzed_rows(store, "resource", started) or 0) >= autoanalyze.BASE_ROWS


def test_import_batches_are_analyzed_once_they_add_up(store: Store) -> None:
    analyzer = _fresh(store)
    started = time.time()
    for i in range(autoanalyze.BASE_ROWS // 50 + 1):
        bulk_write.write(store, [{**factories.patient(), "id": f"p{i}-{j}"} for j in range(50)])
    assert analyzer.wait_idle(WAIT)
    assert (_analyzed_rows(store, "resource", started) or 0) >= autoanalyze.BASE_ROWS


def test_a_few_writes_analyze_nothing(store: Store) -> None:
    analyzer = _fresh(store)
    bulk_write.write(store, [{**factories.patient(), "id": f"p{i}"} for i in range(20)])
    assert analyzer.wait_idle(WAIT)
    assert analyzer.passes == 0


def test_a_type_first_thousand_rows_are_analyzed_even_below_the_table_threshold(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(autoanalyze, "BASE_ROWS", 10**9)  # as if the table were far too big to be due
    analyzer = _fresh(store)
    started = time.time()
    step = autoanalyze.TYPE_STEPS[0]
    bulk_write.write(store, [{**factories.patient(), "id": f"p{i}"} for i in range(step - 1)])
    assert analyzer.wait_idle(WAIT)
    assert analyzer.passes == 0
    bulk_write.write(store, [{**factories.patient(), "id": "last"}])
    assert analyzer.wait_idle(WAIT)
    assert (_analyzed_rows(store, "resource", started) or 0) >= step


@pytest.mark.postgres
def test_a_pass_that_finds_another_process_analyzing_tries_again_after_it(store: Store) -> None:
    analyzer = _fresh(store)
    started = time.time()
    with store.engine.connect() as other:  # another API process in the middle of its pass
        other.execute(text("SELECT pg_advisory_lock(hashtext(:k))"), {"k": autoanalyze._LOCK_KEY})
        bulk_write.write(store, [{**factories.patient(), "id": f"p{i}"} for i in range(600)])
        deadline = time.monotonic() + WAIT
        while analyzer.passes == 0:
            assert time.monotonic() < deadline, "no pass was attempted"
            time.sleep(0.1)
        assert _analyzed_rows(store, "resource", started) is None
        other.execute(text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": autoanalyze._LOCK_KEY})
        other.commit()
    assert analyzer.wait_idle(WAIT)
    assert (_analyzed_rows(store, "resource", started) or 0) >= 600


def _record_audit_events(store: Store, count: int, per_transaction: int = 50) -> None:
    """`count` AuditEvents written as the audit recorder writes them (`Tx.record`)."""
    from fhir_server.audit import event_index

    for first in range(0, count, per_transaction):
        with store.write() as tx:
            for i in range(first, min(count, first + per_transaction)):
                body = factories.audit_event(f"a{i}")
                tx.record(body, body["id"], event_index.rows(body))


def test_recorded_rows_alone_do_not_start_a_pass_below_their_type_step(store: Store) -> None:
    """The audit trail's steady trickle (Tx.record) is left to autovacuum: many more rows than the
    threshold, written as recorded resources, start no pass of this process's analyzer.
    Fails on the code that counted recorded rows like any write (a pass ran)."""
    analyzer = _fresh(store)
    _record_audit_events(store, autoanalyze.TYPE_STEPS[0] - 1)  # 999 AuditEvents: about 20k index rows
    assert analyzer.wait_idle(WAIT)
    assert analyzer.passes == 0


def test_recorded_rows_count_once_their_type_passes_a_step(store: Store) -> None:
    """...but a type's first 1,000 recorded rows analyze the tables they wrote to, as for any type."""
    analyzer = _fresh(store)
    started = time.time()
    _record_audit_events(store, autoanalyze.TYPE_STEPS[0])
    assert analyzer.wait_idle(WAIT)
    assert analyzer.passes >= 1
    assert (_analyzed_rows(store, "resource", started) or 0) >= autoanalyze.TYPE_STEPS[0]


def test_recorded_rows_are_counted_apart_from_written_rows() -> None:
    changes = autoanalyze.Changes()
    index: Any = {"token": [("a",), ("b",)], "reference": [("c",)]}
    changes.add(
        fast.Batch(creates=[fast.NewResource("AuditEvent", "1", 0, b"", index, "POST")]), recorded=True
    )
    assert changes.rows == {}
    assert changes.types == {"AuditEvent": 1}
    assert changes.recorded == {"resource": 1, "resource_version": 1, "idx_token": 2, "idx_reference": 1}
