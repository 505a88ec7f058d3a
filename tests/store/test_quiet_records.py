"""`Tx.record`: a resource the server records for itself (the audit trail's AuditEvents) is stored,
indexed, readable by id, vread and history like any other, but its version is no change event: no
consumer is handed it, the probe and `latest` ignore it, and events around it still arrive in order;
on SQLite and PostgreSQL (store/outbox.py)."""

from __future__ import annotations

import time

import pytest

from fhir_server.search import plan, query
from fhir_server.search.index import index_tuples
from fhir_server.store import outbox
from fhir_server.store.sql import Store, _as_stored

AUDIT = {"resourceType": "AuditEvent", "recorded": "2024-01-01T00:00:00Z", "action": "R", "outcome": "0"}


def _record(store: Store, rid: str) -> None:
    with store.write() as tx:
        tx.record(AUDIT, rid, index_tuples(_as_stored(AUDIT, rid, 1, 0)))


def _events_once_visible(store: Store, expected: int) -> list[outbox.ChangeEvent]:
    """The events after START once `expected` are readable (PostgreSQL hands out an event only
    once every older transaction in the cluster has ended)."""
    deadline = time.monotonic() + 30
    while True:
        with store.read() as tx:
            events = outbox.events_after(tx.conn, outbox.START, 100)
        if len(events) >= expected or time.monotonic() > deadline:
            return events
        time.sleep(0.1)


def test_a_recorded_resource_is_stored_and_readable_but_no_change_event(store: Store) -> None:
    with store.write() as tx:
        tx.create({"resourceType": "Patient"}, "before")
    _record(store, "a1")
    with store.write() as tx:
        tx.create({"resourceType": "Patient"}, "after")
    _record(store, "a2")
    events = _events_once_visible(store, 2)
    assert [(e.res_type, e.res_id) for e in events] == [("Patient", "before"), ("Patient", "after")]
    with store.read() as tx:
        assert outbox.latest(tx.conn) == events[-1].position
        assert outbox.any_after(tx.conn, events[0].position)
        assert not outbox.any_after(tx.conn, events[-1].position)
        assert outbox.events_after(tx.conn, events[-1].position, 100) == []
        current = tx.current("AuditEvent", "a1")
        assert current is not None and current.resource()["action"] == "R"
        version = tx.version("AuditEvent", "a1", 1)
        assert version is not None and version.content == current.content
        assert [s.res_id for _, s in tx.history(res_type="AuditEvent")] == ["a2", "a1"]


def test_a_recorded_resource_is_found_by_its_index_rows(store: Store) -> None:
    _record(store, "a2")
    parsed = query.parse("AuditEvent", [("action", "R"), ("date", "2024-01-01")], lenient=False)
    with store.read() as tx:
        pks = [row.pk for row in tx.run_search(plan.build(parsed))]
        assert [s.res_id for s in tx.current_by_pks(pks)] == ["a2"]


@pytest.mark.parametrize("count", [1, 700])
def test_many_recorded_in_one_transaction(store: Store, count: int) -> None:
    with store.write() as tx:
        for i in range(count):
            rid = f"m{i}"
            tx.record(AUDIT, rid, index_tuples(_as_stored(AUDIT, rid, 1, 0)))
    with store.read() as tx:
        assert len(tx.current_of_type("AuditEvent", limit=10_000)) == count
        assert outbox.events_after(tx.conn, outbox.START, 10) == []
