"""Change events (store/outbox.py, fhir_server/events): one per committed resource version, whichever
way it was written, none for a rolled-back transaction, and a consumer that dies between commit and
delivery gets the event after restart; on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from fastapi.testclient import TestClient

from fhir_server.api.deps import get_principal
from fhir_server.app import create_app
from fhir_server.auth import scopes
from fhir_server.auth.principal import Principal
from fhir_server.events import ChangeEvent, Dispatcher
from fhir_server.store import outbox
from fhir_server.store.sql import Store, Tx
from tests import factories
from tests.bulk_support import BASE, settings_for, wait_done
from tests.operations.ingest_sources import create_patient

N = 1000
PATIENT_ID = "123"
WRITER = Principal(client_id="events-client", kind="system", scopes=scopes.parse("system/*.cruds"))
REDIS = "redis://127.0.0.1:6379/0"


class Probe:
    """A listener that keeps what it was given."""

    def __init__(self) -> None:
        self.events: list[ChangeEvent] = []

    def __call__(self, events: list[ChangeEvent], tx: Tx) -> None:
        self.events.extend(events)


def _delivered(store: Store, probe: Probe, name: str = "probe", at_least: int = 0) -> list[ChangeEvent]:
    """Everything committed so far, delivered to `probe` (on PostgreSQL an event waits until every
    older transaction of the cluster has ended: poll a little)."""
    dispatcher = Dispatcher(store, {name: probe})
    deadline = time.monotonic() + 30
    while True:
        dispatcher.deliver_all()
        if len(probe.events) >= at_least or time.monotonic() > deadline:
            return probe.events


def _caught_up(store: Store, probe: Probe, name: str = "probe") -> list[ChangeEvent]:
    """Everything stored so far, delivered to `probe`: on PostgreSQL the newest event may not be
    readable yet while another test's transaction in the cluster is open (CI saw the fixture's
    Patient arrive after `before` was counted)."""
    with store.engine.connect() as conn:
        newest = outbox.latest(conn)
    dispatcher = Dispatcher(store, {name: probe})
    deadline = time.monotonic() + 30
    while not (newest == outbox.START or (probe.events and probe.events[-1].position >= newest)):
        assert time.monotonic() < deadline, "the events stored so far were not delivered in 30 s"
        dispatcher.deliver_all()
    return probe.events


@pytest.fixture
def writer_client(store: Store, tmp_path: Path) -> Iterator[TestClient]:
    """An app whose every request comes from WRITER, jobs on threads, the patient created."""
    create_patient(store, PATIENT_ID)
    app = create_app(settings_for(tmp_path, bulk_import_dir=tmp_path / "drop"), store=store)
    app.dependency_overrides[get_principal] = lambda: WRITER
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as client:
        yield client


def _observation(i: int) -> dict[str, Any]:
    return factories.observation(
        PATIENT_ID, value=60 + i % 40, effectiveDateTime=f"2024-03-05T10:{i % 60:02d}:00Z"
    )


def _rest(client: TestClient) -> None:
    for i in range(N):
        response = client.post("/Observation", json=_observation(i))
        assert response.status_code == 201, response.text


def _transaction(client: TestClient) -> None:
    entries = [
        {"resource": _observation(i), "request": {"method": "POST", "url": "Observation"}} for i in range(N)
    ]
    response = client.post("/", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert response.status_code == 200, response.text


def _import(client: TestClient) -> None:
    body = b"".join(orjson.dumps({**_observation(i), "id": f"o{i}"}) + b"\n" for i in range(N))
    response = client.post("/$import", content=body, headers={"Content-Type": "application/fhir+ndjson"})
    assert response.status_code == 202, response.text
    manifest = wait_done(client, response.headers["content-location"]).json()
    assert manifest["output"][0]["count"] == N, manifest


def _ingest(client: TestClient) -> None:
    rows = [
        f"2024-03-{1 + i // 1440:02d}T{i // 60 % 24:02d}:{i % 60:02d}:00+00:00,heart_rate,{60 + i % 40},/min\n"
        for i in range(N)
    ]
    csv = ("date,metric,value,unit\n" + "".join(rows)).encode()
    response = client.post(
        f"/Patient/{PATIENT_ID}/$ingest",
        files={"file": ("vitals.csv", csv, "text/csv")},
        data={"format": "csv"},
    )
    assert response.status_code == 202, response.text
    task_url = response.headers["content-location"]
    deadline = time.monotonic() + 60
    while (task := client.get(task_url).json())["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline, task
        time.sleep(0.05)
    assert task["status"] == "completed", task


WAYS: dict[str, Callable[[TestClient], None]] = {
    "rest": _rest,
    "transaction": _transaction,
    "import": _import,
    "ingest": _ingest,
}


@pytest.mark.parametrize("way", list(WAYS))
def test_each_write_path_emits_one_event_per_version_with_the_same_fields(
    store: Store, writer_client: TestClient, way: str
) -> None:
    probe = Probe()
    before = len(_caught_up(store, probe))  # the patient (written by the server)
    WAYS[way](writer_client)
    with store.read() as tx:
        versions = {
            (s.res_type, s.res_id, s.version) for _, s in tx.history(res_type="Observation", limit=10 * N)
        }
    assert len(versions) == N
    events = [
        e for e in _delivered(store, probe, at_least=before + N)[before:] if e.res_type == "Observation"
    ]
    assert sorted((e.res_type, e.res_id, e.version) for e in events) == sorted(versions)  # one each
    assert {e.source_kind for e in events} == {way}
    assert len({e.context.source for e in events}) == 1  # one Bundle or job (or plain REST)
    fields = {
        (e.interaction, e.context.client_id, e.context.subject, e.context.fhir_user, e.context.patient)
        for e in events
    }
    assert fields == {("create", "events-client", None, None, None)}
    assert len({e.position for e in events}) == N


def test_a_rolled_back_transaction_emits_no_event(store: Store, writer_client: TestClient) -> None:
    probe = Probe()
    before = len(_caught_up(store, probe))
    bad = factories.observation("does-not-exist")  # the closing reference check fails: all rolled back
    entries = [
        {"resource": _observation(1), "request": {"method": "POST", "url": "Observation"}},
        {"resource": bad, "request": {"method": "POST", "url": "Observation"}},
    ]
    response = writer_client.post(
        "/", json={"resourceType": "Bundle", "type": "transaction", "entry": entries}
    )
    assert response.status_code == 422, response.text
    assert writer_client.post("/Observation", json=_observation(2)).status_code == 201
    after = _delivered(store, probe, at_least=before + 1)[before:]
    assert [(e.res_type, e.source_kind) for e in after] == [("Observation", "rest")]


def test_update_patch_delete_and_batch_entries_are_named_by_their_interaction(
    store: Store, writer_client: TestClient
) -> None:
    probe = Probe()
    before = len(_caught_up(store, probe))
    entry = {
        "resource": {**_observation(0), "id": "o1"},
        "request": {"method": "PUT", "url": "Observation/o1"},
    }
    response = writer_client.post("/", json={"resourceType": "Bundle", "type": "batch", "entry": [entry]})
    assert response.status_code == 200, response.text
    assert writer_client.put("/Observation/o1", json={**_observation(1), "id": "o1"}).status_code == 200
    patch = [{"op": "replace", "path": "/status", "value": "amended"}]
    response = writer_client.patch(
        "/Observation/o1", json=patch, headers={"Content-Type": "application/json-patch+json"}
    )
    assert response.status_code == 200, response.text
    assert writer_client.delete("/Observation/o1").status_code in (200, 204)
    events = _delivered(store, probe, at_least=before + 4)[before:]
    assert [(e.version, e.interaction, e.source_kind) for e in events] == [
        (1, "create", "batch"),
        (2, "update", "rest"),
        (3, "patch", "rest"),
        (4, "delete", "rest"),
    ]


@pytest.mark.postgres
def test_an_event_committed_behind_an_earlier_running_writer_waits_for_it_and_is_not_skipped(
    store: Store,
) -> None:
    """PostgreSQL hands out txn before commit: a later-started writer may commit first."""
    probe = Probe()
    dispatcher = Dispatcher(store, {"probe": probe})
    with store.write() as slow:
        slow.create(factories.patient("Slow"), "slow")
        slow.flush()  # its version row (lower txn) exists, uncommitted
        with store.write() as fast:
            fast.create(factories.patient("Fast"), "fast")
        dispatcher.deliver_all()
        assert probe.events == []  # "fast" waits while an older transaction runs
    events = _delivered(store, probe, at_least=2)
    assert [e.res_id for e in events] == ["slow", "fast"]


def test_a_listener_that_fails_before_its_position_commits_gets_the_events_again(store: Store) -> None:
    """In-process crash: the listener breaks off before the consumer's position commits."""
    with store.write() as tx:
        for i in range(3):
            tx.create(factories.patient(f"P{i}"), f"p{i}")

    def crashing(events: list[ChangeEvent], tx: Tx) -> None:
        raise RuntimeError("the consumer died")

    assert Dispatcher(store, {"probe": crashing}).deliver_all() == 0
    probe = Probe()
    events = _delivered(store, probe, at_least=3)
    assert [e.res_id for e in events] == ["p0", "p1", "p2"]
    assert Dispatcher(store, {"probe": probe}).deliver_all() == 0  # delivered once


def test_a_listener_writing_through_its_transaction_takes_effect_once(store: Store) -> None:
    """What a listener writes commits with the position: exactly once per consumer."""
    with store.write() as tx:
        tx.create(factories.patient("A"), "a")

    def audit(events: list[ChangeEvent], tx: Tx) -> None:
        for event in events:
            if event.res_type == "Patient":
                tx.create({"resourceType": "Basic", "code": {"text": f"saw {event.res_id}"}})

    dispatcher = Dispatcher(store, {"audit": audit})
    deadline = time.monotonic() + 30
    while _count(store, "Basic") == 0 and time.monotonic() < deadline:
        dispatcher.deliver_all()
    for _ in range(3):
        dispatcher.deliver_all()
    assert _count(store, "Basic") == 1


def _count(store: Store, rtype: str) -> int:
    with store.read() as tx:
        return tx.count_history(res_type=rtype)


WORKER = textwrap.dedent(
    """
    import os, signal, sys
    from fhir_server.events import register
    from fhir_server.jobs.queue import run_worker
    from fhir_server.settings import Settings

    mode, out = sys.argv[1], sys.argv[2]

    def listener(events, tx):
        if mode == "die":
            os.kill(os.getpid(), signal.SIGKILL)  # after commit, before the position advances
        with open(out, "a") as f:
            f.writelines(f"{e.res_type}/{e.res_id}/{e.version}\\n" for e in events)

    register("probe", listener)
    sys.exit(run_worker(Settings()))
    """
)


@pytest.mark.postgres
@pytest.mark.redis
def test_a_worker_process_killed_between_commit_and_delivery_gets_the_event_after_restart(
    store: Store, tmp_path: Path
) -> None:
    """PostgreSQL with Celery on Redis: the `fhir-server worker` process delivers events; SIGKILLed
    inside the listener, a new worker delivers the same events, once."""
    with store.write() as tx:
        for i in range(3):
            tx.create(factories.patient(f"P{i}"), f"p{i}")
    queue_name = f"fhir-test-events-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "FHIR_DATABASE_URL": store.engine.url.render_as_string(hide_password=False),
        "FHIR_REDIS_URL": REDIS,
        "FHIR_JOB_QUEUE": queue_name,
        "FHIR_DATA_DIR": str(tmp_path / "data"),
    }
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "delivered.txt"
    try:
        dying = subprocess.Popen([sys.executable, str(script), "die", str(out)], env=env, cwd=Path.cwd())
        assert dying.wait(timeout=60) == -signal.SIGKILL
        assert not out.exists()
        with store.read() as tx:
            assert outbox.position(tx.conn, "probe") in (None, outbox.START)  # never moved
        worker = subprocess.Popen([sys.executable, str(script), "deliver", str(out)], env=env, cwd=Path.cwd())
        try:
            deadline = time.monotonic() + 60
            while not (out.exists() and len(out.read_text().splitlines()) >= 3):
                assert time.monotonic() < deadline and worker.poll() is None
                time.sleep(0.1)
            time.sleep(1.5)  # a further poll of the dispatcher delivers nothing again
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
    finally:
        redis.Redis.from_url(REDIS).delete(queue_name)
    assert out.read_text().splitlines() == ["Patient/p0/1", "Patient/p1/1", "Patient/p2/1"]
    with store.read() as tx:
        assert outbox.position(tx.conn, "probe") != outbox.START


def test_conditional_creates_in_a_transaction_emit_what_single_conditional_creates_emit(
    store: Store, writer_client: TestClient
) -> None:
    """A Bundle of conditional creates resolved together (interactions/conditional_creates.py): one
    create event per new resource with the fields a single conditional create gives, none for the
    entries that matched, none for a resend."""
    probe = Probe()
    # at least the fixture's Patient: on PostgreSQL it is readable only once every older transaction
    # of the cluster ended (the app's own change-event thread, other sessions), so wait for it
    before = len(_delivered(store, probe, at_least=1))
    system = "urn:test:events"

    def obs(i: int) -> dict[str, Any]:
        return {**_observation(i), "identifier": [{"system": system, "value": f"s{i}"}]}

    for i in range(3):  # one by one over REST: s0, s1, s2
        response = writer_client.post(
            "/Observation", json=obs(i), headers={"If-None-Exist": f"identifier={system}|s{i}"}
        )
        assert response.status_code == 201, response.text
    entries = [
        {
            "resource": obs(i),
            "request": {"method": "POST", "url": "Observation", "ifNoneExist": f"identifier={system}|s{i}"},
        }
        for i in range(6)  # s0..s2 exist, s3..s5 are new
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    for _ in range(2):  # the second time, nothing is new
        response = writer_client.post("/", json=bundle)
        assert response.status_code == 200, response.text
    events = _delivered(store, probe, at_least=before + 6)[before:]
    assert [e.source_kind for e in events] == ["rest"] * 3 + ["transaction"] * 3
    single, batched = events[:3], events[3:]

    def fields(e: ChangeEvent) -> tuple[Any, ...]:
        c = e.context
        return (e.res_type, e.version, e.interaction, c.client_id, c.subject, c.fhir_user, c.patient)

    assert (
        {fields(e) for e in single}
        == {fields(e) for e in batched}
        == {("Observation", 1, "create", "events-client", None, None, None)}
    )
    with store.read() as tx:
        assert len(tx.history(res_type="Observation", limit=100)) == 6
    time.sleep(0.2)
    assert len(_delivered(store, probe)) == before + 6  # the resend wrote nothing


def test_the_read_only_probe_agrees_with_the_events_it_stands_for(store: Store) -> None:
    """`outbox.any_after` (the dispatcher's lock-free look) is True exactly where `events_after`
    finds an event, at the start, in the middle and at the end of the outbox."""
    create_patient(store, "probe-1")
    create_patient(store, "probe-2")
    probe = Probe()
    events = _caught_up(store, probe)
    with store.engine.connect() as conn:
        for position in (outbox.START, *(e.position for e in events)):
            assert outbox.any_after(conn, position) == bool(outbox.events_after(conn, position, 1))


def test_a_look_that_finds_nothing_takes_no_write_transaction(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_patient(store, "probe-3")
    probe = Probe()
    dispatcher = Dispatcher(store, {"probe": probe})
    _caught_up(store, probe)
    dispatcher.deliver_all()  # this dispatcher has seen the newest position now

    def no_write() -> None:
        raise AssertionError("an empty look claimed the consumer")

    monkeypatch.setattr(store, "write", no_write)
    assert dispatcher.deliver("probe") == 0  # deliver, not deliver_all: that one logs failures


def test_contents_are_each_version_s_stored_json_in_batches_and_empty_for_a_deletion(store: Store) -> None:
    """`outbox.contents` (what the audit trail and the Subscription matcher read): the JSON stored
    for each version asked for, over more than one batch of 500, empty bytes for a deletion, nothing
    for an unknown txn; on PostgreSQL one bigint[] parameter per batch, on SQLite an IN list."""
    tag = uuid.uuid4().hex[:8]
    with store.write() as tx:
        created = [tx.create(factories.patient(family=f"c{tag}{i}"), f"c{tag}-{i}") for i in range(520)]
    with store.write() as tx:
        first = tx.current("Patient", created[0].res_id)
        assert first is not None
        updated = tx.update(first, {**factories.patient(family=f"u{tag}"), "id": first.res_id})
    with store.write() as tx:
        second = tx.current("Patient", created[1].res_id)
        assert second is not None
        deleted = tx.delete(second)
    with store.engine.connect() as conn:
        events = outbox.events_after(conn, outbox.START, 10_000_000)
        mine = [e for e in events if e.res_id.startswith(f"c{tag}-")]
        assert len(mine) == 522
        txns = [e.position[1] for e in mine]
        got = outbox.contents(conn, [*txns, max(txns) + 10_000_000])
    assert set(got) == set(txns)
    by_version = {(e.res_id, e.version): got[e.position[1]] for e in mine}
    assert orjson.loads(by_version[(updated.res_id, 2)])["name"][0]["family"] == f"u{tag}"
    assert orjson.loads(by_version[(updated.res_id, 1)])["name"][0]["family"] == f"c{tag}0"
    assert by_version[(deleted.res_id, deleted.version)] == b""
    assert orjson.loads(by_version[(created[519].res_id, 1)])["id"] == created[519].res_id


def _rows_read(plan: dict[str, Any], table: str) -> int:
    """Rows the scans of `table` in an EXPLAIN (ANALYZE, FORMAT JSON) plan produced or threw away."""
    own = 0
    if plan.get("Relation Name") == table:
        own = plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)
        own += plan.get("Rows Removed by Index Recheck", 0)
    return own + sum(_rows_read(child, table) for child in plan.get("Plans", ()))


def test_a_batch_of_events_reads_only_its_own_rows_wherever_the_position_is(store: Store) -> None:
    """`outbox.events_after` starts its index scan at the consumer's position: a batch costs its own
    rows however many events lie before or after the position. (Its condition was
    `xid > :xid OR (xid = :xid AND txn > :txn)`, which PostgreSQL could not start an index scan
    at: each batch walked every event before the position, or fetched and sorted every event after
    it; a million-record `$ingest` spent most of its audit trail's time there. Fails on that code.)
    On SQLite the position is a txn: an index search from it, in its order."""
    for i in range(30):
        with store.write() as tx:
            for j in range(40):
                tx.create(factories.patient(family=f"batch{i}x{j}"))
    probe = Probe()
    events = _caught_up(store, probe)
    assert len(events) >= 1200
    limit = 10
    with store.engine.connect() as conn:
        for position in (events[len(events) // 3].position, events[2 * len(events) // 3].position):
            statement = outbox.events_query(position, limit, store.sqlite)
            sql = str(statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
            if store.sqlite:
                conn.exec_driver_sql("ANALYZE resource_version")
                plan = " | ".join(str(row[3]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
                assert "SEARCH resource_version USING" in plan, plan
                assert "txn>?" in plan or "rowid>?" in plan, plan
                assert "TEMP B-TREE" not in plan, plan
            else:
                conn.exec_driver_sql("ANALYZE resource_version")
                explained = conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + sql).scalar_one()
                read = _rows_read(explained[0]["Plan"], "resource_version")
                assert read <= limit, f"{read} rows of resource_version read for a batch of {limit}"
            got = outbox.events_after(conn, position, limit)
            after = [e for e in events if e.position > position][:limit]
            assert [e.position for e in got] == [e.position for e in after]


def test_an_empty_look_probes_once_on_one_connection_for_consumers_at_the_same_position(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Consumers caught up to the same position share one read-only probe (a dispatcher looks every
    5-20 ms after each commit: a connection and a probe per consumer each time cost the API process
    a tenth of its GIL during an `$ingest`); a consumer never seen yet is delivered to without one."""
    create_patient(store, "probe-4")
    tag = uuid.uuid4().hex[:8]
    probes = {f"first-{tag}": Probe(), f"second-{tag}": Probe()}
    dispatcher = Dispatcher(store, dict(probes))

    per_look: list[int] = []  # probes of each look

    def look() -> None:
        before = len(looks)
        dispatcher.deliver_all()
        per_look.append(len(looks) - before)

    def caught_up(ids: str) -> None:
        deadline = time.monotonic() + 30
        while not all(any(e.res_id == ids for e in p.events) for p in probes.values()):
            assert time.monotonic() < deadline, "not delivered in 30 s"
            look()
        look()  # each has seen its newest position now

    looks: list[outbox.Position] = []

    caught_up("probe-4")
    real_probe = outbox.any_after

    def probe(conn: Any, position: outbox.Position) -> bool:
        looks.append(position)
        return real_probe(conn, position)

    connects = 0
    real_connect = store.engine.connect

    def connect() -> Any:
        nonlocal connects
        connects += 1
        return real_connect()

    monkeypatch.setattr(outbox, "any_after", probe)
    monkeypatch.setattr(store.engine, "connect", connect)
    assert dispatcher.deliver_all() == 0
    assert len(looks) == 1 and connects == 1

    monkeypatch.setattr(store.engine, "connect", real_connect)
    create_patient(store, "probe-5")
    probes[f"third-{tag}"] = dispatcher.listeners[f"third-{tag}"] = Probe()  # never seen by it
    per_look.clear()
    caught_up("probe-5")
    assert per_look and max(per_look) == 1  # first and second share one; third's needs none
    assert "probe-4" in [e.res_id for e in probes[f"third-{tag}"].events]  # from its stored start


def test_an_idle_listener_is_moved_past_the_committed_events_without_reading_them(store: Store) -> None:
    """A listener with nothing to do for any event so far (the Subscription matcher with no live
    Subscription) is not handed them: its position moves to the newest committed event in one
    transaction; once it is busy again, the events after that position are delivered."""
    create_patient(store, "idle-1")
    tag = uuid.uuid4().hex[:8]
    name = f"idle-{tag}"
    probe, busy = Probe(), False
    dispatcher = Dispatcher(store, {name: probe}, idle={name: lambda conn: not busy})
    with store.engine.connect() as conn:
        newest = outbox.latest(conn)
    deadline = time.monotonic() + 30
    while True:
        dispatcher.deliver_all()
        with store.engine.connect() as conn:
            if outbox.position(conn, name) == newest:
                break
        assert time.monotonic() < deadline, "the idle consumer was not moved to the newest event"
    assert probe.events == []
    busy = True
    create_patient(store, "idle-2")
    deadline = time.monotonic() + 30
    while not probe.events:
        assert time.monotonic() < deadline, "the events after the skip were not delivered"
        dispatcher.deliver_all()
    assert [e.res_id for e in probe.events] == ["idle-2"]


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)  # SQLite: no commit during a delivery
def test_an_event_committed_while_the_listener_is_asked_whether_it_is_idle_is_not_skipped(
    store: Store,
) -> None:
    """The newest committed event is read before the idle test: a write committing while the
    listener answers (a Subscription stored, say) comes after every event skipped. (SQLite has one
    writer: nothing can commit during a delivery, so this is PostgreSQL's case.)"""
    create_patient(store, "race-1")
    name = f"race-{uuid.uuid4().hex[:8]}"
    asked = 0

    def idle(conn: Any) -> bool:
        nonlocal asked
        asked += 1
        if asked == 1:  # a write commits after the newest event was read, before the answer
            create_patient(store, "race-2")
        return asked == 1

    probe = Probe()
    dispatcher = Dispatcher(store, {name: probe}, idle={name: idle})
    deadline = time.monotonic() + 30
    while not probe.events:
        assert time.monotonic() < deadline, "the event committed during the idle test was lost"
        dispatcher.deliver_all()
    assert asked >= 2
    assert "race-2" in [e.res_id for e in probe.events]
    assert "race-1" not in [e.res_id for e in probe.events]
