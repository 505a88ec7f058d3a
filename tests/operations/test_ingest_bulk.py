"""Ingest on the bulk write path keeps the meaning of a conditional create per record, on SQLite and PostgreSQL (https://hl7.org/fhir/R4/http.html#ccreate)."""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from fhir_server.auth.principal import Access, Grant
from fhir_server.interactions.context import Context
from fhir_server.operations import ingest_bulk
from fhir_server.operations.ingest import Tally, open_run
from fhir_server.settings import Settings
from fhir_server.store import tables as t
from fhir_server.store.outbox import WriteContext, interaction
from fhir_server.store.sql import Store
from ingest.pipeline import iter_file
from tests.ingest.fixtures import PATIENT, write, write_apple_export
from tests.operations.ingest_sources import create_patient, stored, stored_resources, stored_types

OTHER = "Patient/456"


def _csv(path: Path, minutes: range, patient: str | None = None) -> Path:
    head = "date,metric,value,unit" + (",patient" if patient else "") + "\n"
    rows = "".join(
        f"2024-03-01T{m // 60:02d}:{m % 60:02d}:00Z,heart_rate,{60 + m % 40},/min"
        + (f",{patient}" if patient else "")
        + "\n"
        for m in minutes
    )
    return write(path, head + rows)


def _ingest(
    store: Store,
    settings: Settings,
    path: Path,
    fmt: str = "csv",
    *,
    chunk: int = ingest_bulk.CHUNK,
    grants: dict[str, Access] | None = None,
    source: str = "ingest:test",
) -> Tally:
    run, tally = open_run(path, fmt, PATIENT)
    ctx = Context(store=store, settings=settings, writer=WriteContext(source))
    return ingest_bulk.write(ctx, run, tally, grants=grants, chunk_size=chunk)


def _identifiers(store: Store) -> Counter[str]:
    return Counter(o["identifier"][0]["value"] for o in stored_resources(store, "Observation"))


def _events(store: Store) -> list[tuple[str, int, str]]:
    """(interaction, version, source) of every change event stored, in txn order (read from the
    outbox rows themselves: `events_after` on PostgreSQL also waits for unrelated transactions of
    the cluster, such as another database's bench)."""
    v, c = t.resource_version.c, t.write_context.c
    stmt = (
        select(v.method, v.version, v.deleted, c.source)
        .join_from(t.resource_version, t.write_context, c.id == v.context)
        .order_by(v.txn)
    )
    with store.engine.connect() as conn:
        return [(interaction(m, n, d), n, str(src)) for m, n, d, src in conn.execute(stmt)]


def test_a_new_file_is_created_with_one_provenance_and_a_create_event_per_resource(
    store: Store, app_settings: Settings, tmp_path: Path
) -> None:
    create_patient(store)
    before = len(_events(store))
    tally = _ingest(store, app_settings, _csv(tmp_path / "a.csv", range(5)))
    assert (tally.created, tally.existing, tally.problems) == (6, 0, [])
    assert stored_types(store) == Counter({"Patient": 1, "Observation": 5, "Provenance": 1})
    [provenance] = stored_resources(store, "Provenance")
    ids = {f"Observation/{o['id']}" for o in stored_resources(store, "Observation")}
    assert {target["reference"] for target in provenance["target"]} == ids
    events = _events(store)[before:]
    assert len(events) == 6
    assert set(events) == {("create", 1, "ingest:test")}


def test_sending_the_same_file_again_creates_nothing(
    store: Store, app_settings: Settings, tmp_path: Path
) -> None:
    create_patient(store)
    path = _csv(tmp_path / "a.csv", range(7))
    first = _ingest(store, app_settings, path, chunk=3)
    assert first.created == 7 + 3  # three chunks, three Provenances
    before, events = stored(store), len(_events(store))
    again = _ingest(store, app_settings, path, chunk=3)
    assert (again.created, again.existing) == (0, first.created)
    assert stored(store) == before and len(_events(store)) == events


def test_duplicates_inside_one_file_become_one_resource(
    store: Store, app_settings: Settings, tmp_path: Path
) -> None:
    create_patient(store)
    text = _csv(tmp_path / "x.csv", range(3)).read_text()
    body = text.split("\n", 1)[1]
    path = write(tmp_path / "dup.csv", text + body + body)  # every row three times
    run, tally = open_run(path, "csv", PATIENT)
    ctx = Context(store=store, settings=app_settings, writer=WriteContext("ingest:test"))
    ingest_bulk.write(ctx, run, tally, chunk_size=2)  # repeats in the same chunk and in later ones
    assert sum(_identifiers(store).values()) == 3 and set(_identifiers(store).values()) == {1}
    # [0 1] [2 0] [1 2] [0 1] [2]: the first two chunks create, and each gets its Provenance
    assert tally.created == 3 + 2 and tally.problems == []
    assert stored_types(store)["Provenance"] == 2
    assert run.counts["duplicates"] == 0 and run.counts["observations"] == 9
    rows = _csv(tmp_path / "y.csv", range(10, 13)).read_text().splitlines(keepends=True)
    doubled = write(tmp_path / "doubled.csv", rows[0] + "".join(r + r for r in rows[1:]))
    run, tally = open_run(doubled, "csv", PATIENT)
    ingest_bulk.write(ctx, run, tally)  # one chunk: the repeats are dropped in memory
    assert (run.counts["duplicates"], tally.created, tally.problems) == (3, 3 + 1, [])
    assert sum(_identifiers(store).values()) == 6 and set(_identifiers(store).values()) == {1}


def test_a_file_that_partly_overlaps_an_earlier_one_creates_only_the_new_records(
    store: Store, app_settings: Settings, tmp_path: Path
) -> None:
    create_patient(store)
    _ingest(store, app_settings, _csv(tmp_path / "a.csv", range(0, 4)))
    tally = _ingest(store, app_settings, _csv(tmp_path / "b.csv", range(2, 7)))
    assert (tally.created, tally.existing) == (3 + 1, 2)
    assert sum(_identifiers(store).values()) == 7 and set(_identifiers(store).values()) == {1}
    newest = max(stored_resources(store, "Provenance"), key=lambda p: p["meta"]["lastUpdated"])
    assert len(newest["target"]) == 5  # what the second file holds, new or already there


def test_a_record_matching_two_existing_resources_is_a_problem_and_the_others_are_stored(
    store: Store, app_settings: Settings, tmp_path: Path
) -> None:
    create_patient(store)
    path = _csv(tmp_path / "a.csv", range(4))
    entry, _, line = list(iter_file(path, "csv", PATIENT).records())[1]
    with store.write() as tx:
        tx.create(dict(entry.resource))
        tx.create(dict(entry.resource))
    tally = _ingest(store, app_settings, path)
    [problem] = tally.problems
    assert problem.location == line and "more than one Observation" in problem.message
    assert tally.created == 3 + 1 and tally.counts["rejected"] == 1
    assert _identifiers(store)[entry.resource["identifier"][0]["value"]] == 2  # untouched


def test_each_device_is_written_once_per_run_and_observations_refer_to_it(
    store: Store, app_settings: Settings, tmp_path: Path
) -> None:
    create_patient(store)
    path = write_apple_export(tmp_path / "export.xml", 120)
    devices = {d.full_url for _, d, _ in iter_file(path, "apple-health", PATIENT).records() if d is not None}
    assert devices
    tally = _ingest(store, app_settings, path, "apple-health", chunk=25)
    types = stored_types(store)
    assert types["Device"] == len(devices) and types["Observation"] == 120 and types["Provenance"] == 5
    device_ids = {f"Device/{d['id']}" for d in stored_resources(store, "Device")}
    assert {o["device"]["reference"] for o in stored_resources(store, "Observation")} <= device_ids
    for provenance in stored_resources(store, "Provenance"):
        agents = {a["who"].get("reference") for a in provenance["agent"]} - {None}
        assert agents and agents <= device_ids
    again = _ingest(store, app_settings, path, "apple-health", chunk=25)
    assert (again.created, again.existing) == (0, tally.created)
    assert stored_types(store) == types


def test_two_chunks_in_flight_together_keep_the_meaning_of_one_chunk_at_a_time(
    store: Store, app_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With FHIR_INGEST_PIPELINE=2 on PostgreSQL the second chunk's transaction starts while the first
    is still open (the first waits for it here), and a record in both still becomes one resource;
    SQLite writes one at a time whatever the setting."""
    create_patient(store)
    rows = _csv(tmp_path / "r.csv", range(3)).read_text().splitlines(keepends=True)
    path = write(tmp_path / "overlap.csv", "".join([rows[0], rows[1], rows[2], rows[2], rows[3]]))
    perform = ingest_bulk.BulkIngest._perform
    second_started = threading.Event()
    calls: list[int] = []
    overlapped: list[bool] = []

    def watched(self: ingest_bulk.BulkIngest, tx: Any, chunk: Any, out: Any, turn: Any) -> Any:
        calls.append(len(calls))
        if len(calls) == 1:  # the first chunk's transaction: is the second one started meanwhile?
            overlapped.append(second_started.wait(0.5 if store.sqlite else 10))
        else:
            second_started.set()
        return perform(self, tx, chunk, out, turn)

    monkeypatch.setattr(ingest_bulk.BulkIngest, "_perform", watched)
    pipelined = app_settings.model_copy(update={"ingest_pipeline": 2})
    tally = _ingest(store, pipelined, path, chunk=2)  # [0 1] [1 2]: record 1 in both
    assert overlapped == [not store.sqlite]
    assert sum(_identifiers(store).values()) == 3 and set(_identifiers(store).values()) == {1}
    assert (tally.created, tally.existing, tally.problems) == (3 + 2, 1, [])
    assert stored_types(store) == Counter({"Patient": 1, "Observation": 3, "Provenance": 2})


def test_chunks_in_flight_together_write_one_at_a_time(
    store: Store, app_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one chunk is written (COPY, checks, commit) the next is only prepared: two chunks
    writing into the same indexes at once cost both sides a fifth more CPU."""
    create_patient(store)
    perform = ingest_bulk.BulkIngest._perform
    lock = threading.Lock()
    writing: list[int] = []
    most: list[int] = [0]

    def watched(self: ingest_bulk.BulkIngest, tx: Any, chunk: Any, out: Any, turn: Any) -> Any:
        class Watched:
            def take(self) -> None:
                turn.take()
                with lock:
                    writing.append(1)
                    most[0] = max(most[0], len(writing))
                time.sleep(0.2)  # a slow write: the other chunk in flight reaches its own meanwhile
                with lock:
                    writing.pop()

        return perform(self, tx, chunk, out, Watched())

    monkeypatch.setattr(ingest_bulk.BulkIngest, "_perform", watched)
    pipelined = app_settings.model_copy(update={"ingest_pipeline": 2})
    tally = _ingest(store, pipelined, _csv(tmp_path / "six.csv", range(6)), chunk=2)
    assert tally.created == 6 + 3 and most == [1]


def test_chunks_in_flight_together_run_with_a_short_gil_switch_interval_restored_after(
    store: Store, app_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While two chunks are in flight on PostgreSQL the interval is 1 ms (so a chunk back from a
    round trip soon gets the GIL); it is restored after the run, also when nested runs overlap."""
    create_patient(store)
    before = sys.getswitchinterval()
    seen: list[float] = []
    perform = ingest_bulk.BulkIngest._perform

    def watched(self: ingest_bulk.BulkIngest, tx: Any, chunk: Any, out: Any, turn: Any) -> Any:
        seen.append(sys.getswitchinterval())
        return perform(self, tx, chunk, out, turn)

    monkeypatch.setattr(ingest_bulk.BulkIngest, "_perform", watched)
    path = _csv(tmp_path / "two.csv", range(4))
    pipelined = app_settings.model_copy(update={"ingest_pipeline": 2})
    with ingest_bulk._quick_switching():  # another run already in flight keeps it short
        _ingest(store, pipelined, path, chunk=2)
        assert sys.getswitchinterval() == min(before, 0.001)
    assert sys.getswitchinterval() == before
    expected = before if store.sqlite else min(before, 0.001)  # SQLite writes a chunk at a time
    assert seen and set(seen) == {min(before, 0.001)}
    _ingest(store, pipelined, _csv(tmp_path / "more.csv", range(4, 8)), chunk=2)
    assert seen[-1] == expected and sys.getswitchinterval() == before


def test_a_written_chunk_is_garbage_when_the_collection_between_chunks_runs(
    store: Store, app_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The collection between chunks is cheap only if the chunk just written is no longer alive
    (an `enumerate` over the chunks kept the last one in its cached result tuple)."""
    create_patient(store)
    alive: list[int] = []
    real = ingest_bulk.chunked_collection

    @contextmanager
    def counting() -> Iterator[Callable[[], None]]:
        with real() as between_chunks:

            def between() -> None:
                alive.append(sum(isinstance(o, ingest_bulk._Record) for o in gc.get_objects()))
                between_chunks()

            yield between

    monkeypatch.setattr(ingest_bulk, "chunked_collection", counting)
    tally = _ingest(
        store,
        app_settings.model_copy(update={"ingest_pipeline": 1}),
        _csv(tmp_path / "six.csv", range(6)),
        chunk=2,
    )
    assert tally.created == 6 + 3 and alive == [0, 0, 0]


def test_a_record_about_a_patient_that_does_not_exist_is_a_problem(
    store: Store, app_settings: Settings, tmp_path: Path
) -> None:
    create_patient(store)
    path = write(
        tmp_path / "p.csv",
        "date,metric,value,unit,patient\n"
        "2024-03-01T08:00:00Z,heart_rate,70,/min,Patient/123\n"
        "2024-03-01T08:01:00Z,heart_rate,71,/min,Patient/nobody\n",
    )
    tally = _ingest(store, app_settings, path)
    [problem] = tally.problems
    assert problem.location == 3 and "Patient/nobody does not exist" in problem.message
    assert stored_types(store)["Observation"] == 1


def test_a_patient_confined_requester_writes_only_into_its_own_chart(
    store: Store, app_settings: Settings, tmp_path: Path
) -> None:
    create_patient(store)
    create_patient(store, OTHER.split("/")[1])
    path = write(
        tmp_path / "two.csv",
        "date,metric,value,unit,patient\n"
        "2024-03-01T08:00:00Z,heart_rate,70,/min,Patient/123\n"
        "2024-03-01T08:01:00Z,heart_rate,71,/min,Patient/456\n",
    )
    mine = {"Observation": Access("cs", (Grant(PATIENT),))}
    tally = _ingest(store, app_settings, path, grants=mine)
    [problem] = tally.problems
    assert problem.location == 3 and "outside the patient compartment" in problem.message
    assert {o["subject"]["reference"] for o in stored_resources(store, "Observation")} == {PATIENT}
    operator = _ingest(store, app_settings, path)  # no grants: the operator's command
    assert operator.problems == [] and operator.created == 1 + 1
    assert {o["subject"]["reference"] for o in stored_resources(store, "Observation")} == {PATIENT, OTHER}


def test_what_lies_outside_the_grants_is_refused_in_the_same_transaction(
    store: Store, app_settings: Settings, tmp_path: Path
) -> None:
    create_patient(store)
    labs_only = {"Observation": Access("cs", (Grant(PATIENT, (("category", "laboratory"),)),))}
    tally = _ingest(store, app_settings, _csv(tmp_path / "hr.csv", range(3)), grants=labs_only)
    assert tally.failed_bundles == 1 and tally.created == 0
    [refused] = tally.problems
    assert refused.location == "chunk 1" and "outside the granted" in refused.message
    assert stored_types(store)["Observation"] == 0 and stored_types(store)["Provenance"] == 0


def test_two_ingests_of_the_same_file_at_once_create_each_resource_once(
    store: Store, app_settings: Settings, tmp_path: Path
) -> None:
    create_patient(store)
    path = _csv(tmp_path / "race.csv", range(60))
    tallies: list[Tally] = []
    errors: list[BaseException] = []

    def ingest() -> None:
        try:
            tallies.append(_ingest(store, app_settings, path, chunk=20))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=ingest) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(_identifiers(store).values()) == 60 and set(_identifiers(store).values()) == {1}
    assert stored_types(store)["Provenance"] == 3
    assert sorted(t.created for t in tallies) == [0, 63] or sum(t.created for t in tallies) == 63
    assert all(t.failed_bundles == 0 for t in tallies)
    with store.engine.connect() as conn:
        versions = conn.execute(select(func.count()).select_from(t.resource_version)).scalar_one()
    assert versions == 1 + 60 + 3


def test_an_invalid_record_is_a_problem_and_the_others_are_stored(
    store: Store, app_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation is kept for what is created: a record the validator refuses is reported."""
    create_patient(store)
    path = _csv(tmp_path / "a.csv", range(3))
    from fhir_server.operations import ingest_bulk as module

    real = module.checked_body

    def strict(body: Any, res_type: str, **kw: Any) -> dict[str, Any]:
        if res_type == "Observation" and body.get("valueQuantity", {}).get("value") == 61:
            body = {**body, "status": "not-a-status"}  # what the validator must refuse
        return real(body, res_type, **kw)

    monkeypatch.setattr(module, "checked_body", strict)
    tally = _ingest(store, app_settings, path)
    [problem] = tally.problems
    assert problem.location == 3 and "not stored" in problem.message and "status" in problem.message
    assert stored_types(store)["Observation"] == 2
