"""Each change event is matched on its own version's content, also when the matcher gets several
versions of one resource in one batch (the dispatcher lagged: docs/events.md), on both databases.

The matcher is driven directly: the versions are written first, then delivered in ONE batch."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from fhir_server.auth import scopes
from fhir_server.auth.principal import Principal
from fhir_server.events import Dispatcher, Listener
from fhir_server.events.registry import IDLE, Idle
from fhir_server.interactions import create as create_
from fhir_server.interactions.context import Context
from fhir_server.store import conditions, outbox
from fhir_server.store.sql import Store
from fhir_server.subscriptions import matcher, tables
from fhir_server.subscriptions.shipped_topics import EMERGENCY, NEW_RESULT
from tests import factories
from tests.subscriptions.test_rest_hook import settings

HEART = "8867-4"
ANONYMOUS = Principal(client_id="anonymous", kind="anonymous-dev")
HOOK = "http://127.0.0.1:9/hook"
LAB = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]
}
HIGH = [
    {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "HH"}
        ]
    }
]


def _deliver(store: Store, count: int | None = None, *, batch: int | None = None) -> int:
    """Every event so far to the matcher; `count` of them in ONE batch. On PostgreSQL an event is
    readable once every older transaction in the cluster ended (docs/events.md), so this first waits
    (other sessions may share the cluster) until all are readable."""
    deadline = time.monotonic() + 60
    while True:
        with store.engine.connect() as conn:
            position = outbox.position(conn, matcher.NAME) or outbox.START
            readable = outbox.events_after(conn, position, 500)
            newest = outbox.latest(conn)
        if (readable[-1].position if readable else position) == newest:
            break
        assert time.monotonic() < deadline, "events never became readable"
        time.sleep(0.05)
    assert count is None or len(readable) == count
    if batch is not None:  # in batches of `batch` events
        return Dispatcher(store, {matcher.NAME: matcher.match}, batch=batch).deliver_all()
    delivered = Dispatcher(store, {matcher.NAME: matcher.match}).deliver(matcher.NAME)
    assert delivered == len(readable)  # one batch
    return delivered


@pytest.fixture
def ready(store: Store) -> Store:
    with store.write() as tx:
        for pid in ("A", "B"):
            tx.create({**factories.patient(pid), "id": pid}, res_id=pid)
    _deliver(store)
    return store


def _subscribe(store: Store, criteria: str, principal: Principal = ANONYMOUS, **extra: Any) -> str:
    body = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "test",
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": HOOK, "payload": "application/fhir+json"},
        **extra,
    }
    with store.write() as tx:
        created = create_.create(Context(store, settings(), principal), tx, "Subscription", body)
    _deliver(store)  # the Subscription's own event
    return str(created.stored.res_id)


def _topic(store: Store, url: str) -> str:
    return _subscribe(store, url)


def _lifecycle(store: Store, first: dict[str, Any], *then: dict[str, Any] | None) -> str:
    """Create `first`, then update to each of `then` (None: delete), each in its own transaction,
    then deliver them all in ONE batch; the resource's id."""
    with store.write() as tx:
        stored = tx.create(first)
    for body in then:
        with store.write() as tx:
            prev = tx.current(stored.res_type, stored.res_id)
            assert prev is not None
            stored = tx.delete(prev) if body is None else tx.update(prev, {**body, "id": stored.res_id})
    _deliver(store, 1 + len(then))  # one batch holds every version
    return stored.res_id


def _notified(store: Store, sub_id: str) -> list[tuple[int, str, str, int]]:
    d = tables.subscription_delivery.c
    with store.read() as tx:
        rows = tx.conn.execute(
            select(d.event_number, d.interaction, d.res_id, d.version)
            .where(d.sub_id == sub_id, d.interaction.in_(("create", "update", "patch", "delete")))
            .order_by(d.event_number)
        )
        return [(int(n), str(i), str(r), int(v)) for n, i, r, v in rows]


def _members(store: Store, sub_id: str) -> set[str]:
    m = tables.subscription_match.c
    with store.read() as tx:
        return {str(r) for (r,) in tx.conn.execute(select(m.res_id).where(m.sub_id == sub_id))}


def _heart(value: float = 70, **extra: Any) -> dict[str, Any]:
    return factories.observation("A", code=HEART, value=value, **extra)


def _other_code(**extra: Any) -> dict[str, Any]:
    return factories.observation("A", code="9279-1", **extra)


def test_create_update_delete_in_one_batch_are_each_notified_in_order(ready: Store) -> None:
    sub = _subscribe(ready, f"Observation?code=http://loinc.org|{HEART}")
    rid = _lifecycle(ready, _heart(70), _heart(80), None)
    assert _notified(ready, sub) == [(1, "create", rid, 1), (2, "update", rid, 2), (3, "delete", rid, 3)]
    assert _members(ready, sub) == set()


def test_a_create_that_matched_is_notified_though_its_update_left_the_criteria(ready: Store) -> None:
    sub = _subscribe(ready, f"Observation?code=http://loinc.org|{HEART}")
    rid = _lifecycle(ready, _heart(), _other_code())
    assert _notified(ready, sub) == [(1, "create", rid, 1)]
    assert _members(ready, sub) == set()  # it left: a later delete is not its business
    with ready.write() as tx:
        prev = tx.current("Observation", rid)
        assert prev is not None
        tx.delete(prev)
    _deliver(ready)
    assert _notified(ready, sub) == [(1, "create", rid, 1)]


def test_left_then_deleted_in_the_same_batch_notifies_only_the_create(ready: Store) -> None:
    sub = _subscribe(ready, f"Observation?code=http://loinc.org|{HEART}")
    rid = _lifecycle(ready, _heart(), _other_code(), None)
    assert _notified(ready, sub) == [(1, "create", rid, 1)]


def test_an_update_entering_the_criteria_is_notified_and_the_create_outside_it_not(ready: Store) -> None:
    sub = _subscribe(ready, f"Observation?code=http://loinc.org|{HEART}")
    rid = _lifecycle(ready, _other_code(), _heart(), None)
    assert _notified(ready, sub) == [(1, "update", rid, 2), (2, "delete", rid, 3)]


def test_a_search_value_of_the_old_version_is_compared_as_the_search_compares_it(ready: Store) -> None:
    # a quantity prefix: v1 (70) matches gt60, v2 (50) does not, v3 (65) again
    sub = _subscribe(ready, f"Observation?code=http://loinc.org|{HEART}&value-quantity=gt60")
    rid = _lifecycle(ready, _heart(70), _heart(50), _heart(65))
    assert _notified(ready, sub) == [(1, "create", rid, 1), (2, "update", rid, 3)]


def test_the_owners_grants_apply_to_the_old_version(ready: Store) -> None:
    owner = Principal(
        client_id="app",
        kind="patient",
        scopes=scopes.parse("patient/Observation.rs patient/Subscription.cruds launch/patient"),
        patient="A",
    )
    sub = _subscribe(ready, f"Observation?code=http://loinc.org|{HEART}", owner)
    # v1 about patient B (outside the owner's compartment), v2 about A: only v2
    rid = _lifecycle(ready, factories.observation("B", code=HEART), _heart())
    assert _notified(ready, sub) == [(1, "update", rid, 2)]
    # v1 about A, v2 about B, deleted: only v1 (it left the owner's reach with v2)
    rid2 = _lifecycle(ready, _heart(), factories.observation("B", code=HEART), None)
    assert _notified(ready, sub)[1:] == [(2, "create", rid2, 1)]


def test_a_topic_subscription_gets_each_version_it_triggers_on(ready: Store) -> None:
    sub = _topic(ready, NEW_RESULT.url)
    lab, vital = _heart(category=[LAB]), _heart()
    rid = _lifecycle(ready, lab, {**lab, "status": "amended"}, None)  # all three in the topic
    assert _notified(ready, sub) == [(1, "create", rid, 1), (2, "update", rid, 2), (3, "delete", rid, 3)]
    rid2 = _lifecycle(ready, lab, vital, None)  # leaves the topic: the create only
    assert _notified(ready, sub)[3:] == [(4, "create", rid2, 1)]
    rid3 = _lifecycle(ready, vital, lab)  # enters it: the update only
    assert _notified(ready, sub)[4:] == [(5, "update", rid3, 2)]


def test_a_topics_content_test_reads_the_old_versions_content(ready: Store) -> None:
    sub = _topic(ready, EMERGENCY.url)
    critical, normal = _heart(interpretation=HIGH), _heart()
    rid = _lifecycle(ready, critical, normal)  # an emergency, then no longer: the create only
    assert _notified(ready, sub) == [(1, "create", rid, 1)]
    rid2 = _lifecycle(ready, normal, critical, normal)  # only the middle version is one
    assert _notified(ready, sub)[1:] == [(2, "update", rid2, 2)]


ORACLE_CRITERIA = (
    f"code=http://loinc.org|{HEART}",
    "value-quantity=gt60",
    "value-quantity=lt100|http://unitsofmeasure.org|/min",
    "date=ge2024-03-01&date=lt2024-04-01",
    "status:not=final",
    "subject:missing=true",
    "subject=Patient/A",
    "subject:Patient.family=A",
    "category=laboratory",
    "_tag=urn:test|flagged",
    "_content=fever",
    f"combo-code-value-quantity=http://loinc.org|{HEART}$gt60",
    "_has:Provenance:target:agent=Patient/B",
)


def _oracle_versions() -> list[dict[str, Any]]:
    v1 = _heart(70)
    v2 = {
        **factories.observation("B", code=HEART, value=50),
        "status": "amended",
        "effectiveDateTime": "2024-05-01T00:00:00Z",
        "note": [{"text": "Fever since Monday"}],
        "meta": {"tag": [{"system": "urn:test", "code": "flagged"}]},
    }
    v3 = {**factories.observation(None, code="9279-1", value=120), "category": [LAB]}
    v4 = _heart(80)
    return [v1, v2, v3, v4]


def test_each_version_is_notified_exactly_when_the_same_search_found_it_while_it_was_current(
    ready: Store,
) -> None:
    """The oracle: after each write, the REST search (with `_id`) says whether that version is found;
    then all versions go to the matcher in ONE batch: each must be notified exactly then."""
    from fhir_server.interactions import search

    subs = {c: _subscribe(ready, f"Observation?{c}") for c in ORACLE_CRITERIA}
    ctx = Context(ready, settings(), ANONYMOUS)
    found: dict[str, list[bool]] = {c: [] for c in ORACLE_CRITERIA}

    def search_now(rid: str) -> None:
        with ready.read() as tx:
            for c in ORACLE_CRITERIA:
                pairs = [tuple(p.split("=", 1)) for p in c.split("&")]
                bundle = search.search(ctx, tx, "Observation", [*pairs, ("_id", rid)])  # type: ignore[list-item]
                found[c].append(bundle.get("total", len(bundle.get("entry", []))) > 0)

    versions = _oracle_versions()
    with ready.write() as tx:
        rid = tx.create(versions[0]).res_id
        # a Provenance about it by patient B, for the _has criteria (current for every version)
        tx.create(
            {
                "resourceType": "Provenance",
                "target": [{"reference": f"Observation/{rid}"}],
                "recorded": "2024-03-05T10:00:00Z",
                "agent": [{"who": {"reference": "Patient/B"}}],
            }
        )
    search_now(rid)
    for body in versions[1:]:
        with ready.write() as tx:
            prev = tx.current("Observation", rid)
            assert prev is not None
            tx.update(prev, {**body, "id": rid})
        search_now(rid)
    with ready.write() as tx:
        prev = tx.current("Observation", rid)
        assert prev is not None
        tx.delete(prev)
    _deliver(ready, 2 + len(versions))
    assert all(any(f) for f in found.values()) and not all(all(f) for f in found.values())
    for c, sub in subs.items():
        expected = [n + 1 for n, hit in enumerate(found[c]) if hit]
        if found[c][-1]:
            expected.append(len(versions) + 1)  # the delete: it was in the result set
        assert [v for _, _, _, v in _notified(ready, sub)] == expected, c


def test_matching_an_old_version_leaves_the_current_rows_as_they_were(ready: Store) -> None:
    from fhir_server.interactions import search

    _subscribe(ready, f"Observation?code=http://loinc.org|{HEART}")
    rid = _lifecycle(ready, _heart(70), _other_code())
    ctx = Context(ready, settings(), ANONYMOUS)
    with ready.read() as tx:
        current = tx.current("Observation", rid)
        assert current is not None and current.version == 2 and not current.deleted
        heart = search.search(ctx, tx, "Observation", [("code", HEART), ("_id", rid)])
        other = search.search(ctx, tx, "Observation", [("code", "9279-1"), ("_id", rid)])
    assert not heart.get("entry") and len(other["entry"]) == 1


@pytest.mark.parametrize("size", [1, 2])
def test_versions_written_before_smaller_batches_are_each_notified_in_order(ready: Store, size: int) -> None:
    sub = _subscribe(ready, f"Observation?code=http://loinc.org|{HEART}")
    with ready.write() as tx:
        rid = tx.create(_heart(70)).res_id
    with ready.write() as tx:
        prev = tx.current("Observation", rid)
        assert prev is not None
        tx.update(prev, {**_heart(80), "id": rid})
    with ready.write() as tx:
        prev = tx.current("Observation", rid)
        assert prev is not None
        tx.delete(prev)
    _deliver(ready, batch=size)
    assert _notified(ready, sub) == [(1, "create", rid, 1), (2, "update", rid, 2), (3, "delete", rid, 3)]


@pytest.mark.postgres
def test_a_write_committed_while_the_batch_is_matched_does_not_change_what_a_version_matched(
    ready: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """READ COMMITTED: the update commits after the matcher read the created row as current and
    before its criteria query ran; the create is still matched on its own content."""
    sub = _subscribe(ready, f"Observation?code=http://loinc.org|{HEART}")
    with ready.write() as tx:
        rid = tx.create(_heart()).res_id
    real = conditions.pks_meeting

    def update_first(tx: Any, pks: Any, condition: Any) -> set[int]:
        monkeypatch.setattr(conditions, "pks_meeting", real)
        with ready.write() as other:  # another transaction, committed before the query
            prev = other.current("Observation", rid)
            assert prev is not None
            other.update(prev, {**_other_code(), "id": rid})
        return real(tx, pks, condition)

    monkeypatch.setattr(conditions, "pks_meeting", update_first)
    _deliver(ready, 1)
    assert conditions.pks_meeting is real  # the update did commit in between
    _deliver(ready, 1)
    assert _notified(ready, sub) == [(1, "create", rid, 1)]
    assert _members(ready, sub) == set()


def test_a_resource_that_left_by_its_code_in_a_later_batch_is_not_notified_of_its_delete(
    ready: Store,
) -> None:
    """The Subscription is no candidate for the update (its code key is not in it): it still leaves."""
    sub = _subscribe(ready, f"Observation?code=http://loinc.org|{HEART}")
    rid = _lifecycle(ready, _heart())
    with ready.write() as tx:
        prev = tx.current("Observation", rid)
        assert prev is not None
        tx.update(prev, {**_other_code(), "id": rid})
    _deliver(ready, 1)
    assert _members(ready, sub) == set()
    with ready.write() as tx:
        prev = tx.current("Observation", rid)
        assert prev is not None
        tx.delete(prev)
    _deliver(ready, 1)
    assert _notified(ready, sub) == [(1, "create", rid, 1)]


def test_the_matcher_is_idle_exactly_while_no_subscription_is_live_and_then_skips_unread(
    ready: Store,
) -> None:
    """Registered as idle while no Subscription is live (requested, active or error): the
    dispatcher then moves it past the events unread, which `match` would have dropped anyway; a
    write after a Subscription is stored is notified."""
    matcher.install()
    assert IDLE[matcher.NAME] is matcher.no_live_subscription
    with ready.engine.connect() as conn:
        assert matcher.no_live_subscription(conn)
    with ready.write() as tx:
        tx.create(_heart(70))  # no Subscription yet: skipped, never notified
    idle: dict[str, Idle] = {matcher.NAME: matcher.no_live_subscription}
    listeners: dict[str, Listener] = {matcher.NAME: matcher.match}
    deadline = time.monotonic() + 30
    while True:
        Dispatcher(ready, listeners, idle=idle).deliver_all()
        with ready.engine.connect() as conn:
            if outbox.position(conn, matcher.NAME) == outbox.latest(conn):
                break
        assert time.monotonic() < deadline, "the idle matcher was not moved past the events"
    sub = _subscribe(ready, f"Observation?code=http://loinc.org|{HEART}")
    with ready.engine.connect() as conn:
        assert not matcher.no_live_subscription(conn)
    rid = _lifecycle(ready, _heart(80))
    assert _notified(ready, sub) == [(1, "create", rid, 1)]
