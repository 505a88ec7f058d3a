"""Writes that lose to contention are run again from scratch, then answered 409, never 500
(fhir_server/store/contention.py), on both databases."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from fhir_server.interactions import update
from fhir_server.store.contention import ATTEMPTS, Contended
from fhir_server.store.sql import Store, Tx
from tests import factories

FHIR = {"Content-Type": "application/fhir+json"}


def _collide(store: Store, tx: Tx) -> None:
    """Fail the way contention does: a PostgreSQL deadlock, or a SQLite database locked by another writer."""
    if not store.sqlite:
        tx.conn.execute(
            text("DO $$ BEGIN RAISE EXCEPTION 'deadlock' USING ERRCODE = 'deadlock_detected'; END $$")
        )
    other = sqlite3.connect(str(store.engine.url.database), timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")  # `tx` holds the write lock: SQLITE_BUSY at once
    finally:
        other.close()


def _patients(store: Store) -> int:
    with store.read() as tx:
        return tx.count_history(res_type="Patient")


def test_a_write_rolled_back_by_contention_runs_again_from_scratch_and_is_kept_once(store: Store) -> None:
    calls: list[int] = []

    def work(tx: Tx) -> Any:
        calls.append(1)
        stored = tx.create(factories.patient(f"Attempt{len(calls)}"))
        tx.flush()
        if len(calls) == 1:
            _collide(store, tx)
        return stored

    stored = store.transact(work)
    assert len(calls) == 2
    assert _patients(store) == 1
    with store.read() as tx:
        kept = tx.current("Patient", stored.res_id)
    assert kept is not None and kept.resource()["name"][0]["family"] == "Attempt2"


def test_a_write_that_keeps_colliding_is_409_transient_after_bounded_attempts(store: Store) -> None:
    calls: list[int] = []

    def work(tx: Tx) -> Any:
        calls.append(1)
        tx.create(factories.patient())
        tx.flush()
        _collide(store, tx)

    with pytest.raises(Contended) as caught:
        store.transact(work)
    assert len(calls) == ATTEMPTS
    assert caught.value.status == 409
    assert caught.value.outcome()["issue"][0]["code"] == "transient"
    assert _patients(store) == 0


def test_a_database_error_that_is_not_contention_is_not_retried(store: Store) -> None:
    calls: list[int] = []

    def work(tx: Tx) -> Any:
        calls.append(1)
        tx.conn.execute(text("SELECT * FROM no_such_table"))

    with pytest.raises(Exception) as caught:
        store.transact(work)
    assert not isinstance(caught.value, Contended)
    assert len(calls) == 1


def test_a_rest_update_that_keeps_colliding_is_409_with_an_operation_outcome(
    client: TestClient, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def colliding_update(ctx: Any, tx: Tx, *args: Any, **kwargs: Any) -> Any:
        _collide(store, tx)

    monkeypatch.setattr(update, "update", colliding_update)
    r = client.put("/Patient/p", json={**factories.patient(), "id": "p"}, headers=FHIR)
    assert r.status_code == 409, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert r.json()["issue"][0]["code"] == "transient"
