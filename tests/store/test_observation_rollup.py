"""observation_value_rollup under concurrent writers of one slot, reindexing and removal of index rows (store/observation_rollup.py; issue 12, acceptance 5).

The oracle tests of the series (tests/operations/test_observation_stats.py) prove the slots exact
after creates, updates and deletes one at a time; here two PostgreSQL transactions write value rows
of the same 15-minute slot at once, the second while the first is still open: the second waits for
the first, and the slot counts both (and, after a delete racing an insert, exactly what is left).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, text

from fhir_server.interactions import create
from fhir_server.interactions.context import Context
from fhir_server.settings import Settings
from fhir_server.store import observation_rollup, tables
from fhir_server.store.reindex import reindex
from fhir_server.store.sql import Store
from tests import factories

SUBJECT = "Patient/rollup-race"
AT = 1_711_846_800_000_000  # 2024-03-31T01:00:00Z: one slot from here on for 15 minutes


_SAME = object()  # the canonical value is the value


def _add_value(conn: Any, pk: int, value: float, minute: int, canon: object = _SAME) -> None:
    conn.execute(
        text(
            "INSERT INTO idx_observation_value (resource_pk, subject, system, code, grp, value_system,"
            " value_code, effective, value, unit, canon_value, canon_code) VALUES (:pk, :subject,"
            " 'http://loinc.org', '8867-4', 0, 'http://loinc.org', '8867-4', :at, :value, '/min', :canon, '/min')"
        ),
        {
            "pk": pk,
            "subject": SUBJECT,
            "at": AT + minute * 60_000_000,
            "value": value,
            "canon": value if canon is _SAME else canon,
        },
    )


def _slots(engine: Engine, *, canonical: bool = False) -> tuple[list[Any], list[Any]]:
    """(the rollup's slots with values, one GROUP BY of the value rows now); `canonical`: with the
    measures of the canonical values too."""
    keys = ", ".join(observation_rollup.KEYS)
    measures = ", ".join(observation_rollup.MEASURES if canonical else observation_rollup.MEASURES[:4])
    width = len(observation_rollup.KEYS) + (8 if canonical else 4)
    with engine.connect() as conn:
        kept = conn.execute(
            text(
                f"SELECT {keys}, {measures} FROM observation_value_rollup WHERE count > 0 OR canon_count > 0"
            )
        ).all()
        rebuilt = conn.execute(text(observation_rollup.GROUPED)).all()
    return sorted(tuple(r) for r in kept), sorted(tuple(r[:width]) for r in rebuilt)


def _race(engine: Engine, first: Any, second: Any) -> None:
    """Run `first(conn)` in an open transaction, then `second(conn)` in a thread (it waits on the
    slot's row lock), commit the first, then let the second commit."""
    one = engine.connect()
    one.begin()
    first(one)
    errors: list[BaseException] = []

    def other() -> None:
        try:
            with engine.begin() as two:
                second(two)
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(timeout=1.0)
    assert thread.is_alive(), "the second writer should wait for the first one's slot"
    one.commit()
    one.close()
    thread.join(timeout=30)
    assert not thread.is_alive() and not errors, errors


@pytest.mark.postgres
def test_two_writers_of_one_slot_both_count(store: Store) -> None:
    engine = store.engine
    _race(engine, lambda c: _add_value(c, 1, 60.0, 1), lambda c: _add_value(c, 2, 90.0, 2))
    kept, rebuilt = _slots(engine)
    assert kept == rebuilt
    assert [(r[9], r[10], r[11], r[12]) for r in kept] == [(2, 150.0, 60.0, 90.0)]
    # a delete racing an insert into the same slot: the slot holds exactly what is left
    _race(
        engine,
        lambda c: c.execute(text("DELETE FROM idx_observation_value WHERE resource_pk = 2")),
        lambda c: _add_value(c, 3, 40.0, 3),
    )
    kept, rebuilt = _slots(engine)
    assert kept == rebuilt
    assert [(r[9], r[10], r[11], r[12]) for r in kept] == [(2, 100.0, 40.0, 60.0)]


def test_reindex_and_expiry_keep_the_slots_exact(store: Store) -> None:
    """`fhir-server reindex` (index rows out, then written again) and the removal of every index row
    (as expiry does) go through the same triggers: the slots follow the value rows."""
    ctx = Context(store=store, settings=Settings(base_url="http://testserver"))
    with store.write() as tx:
        pid = create.create(ctx, tx, "Patient", factories.patient()).stored.res_id
        for minute, value in ((1, 60), (2, 70), (20, 80)):
            obs = factories.observation(pid, value=value, effectiveDateTime=f"2024-03-05T10:{minute:02d}:00Z")
            create.create(ctx, tx, "Observation", obs)
    written, rebuilt = _slots(store.engine)
    assert written == rebuilt and [r[9] for r in written] == [2, 1]  # two slots: 10:00-10:15, 10:15-10:30
    with store.engine.begin() as conn:
        conn.execute(delete(tables.idx_observation_value))
    assert _slots(store.engine) == ([], [])
    assert reindex(store.engine, batch=2) == 4
    assert _slots(store.engine) == (written, rebuilt)


def _steps(conn: Any, statement: Callable[[], Any]) -> int:
    """SQLite virtual-machine steps (in hundreds) of running `statement`, its triggers included: a
    measure of work that does not depend on the machine's speed or load."""
    raw = conn.connection.driver_connection
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    raw.set_progress_handler(count, 100)
    try:
        statement()
    finally:
        raw.set_progress_handler(None, 100)
    return steps[0]


def _steps_of_one_more_value(conn: Any, pk: int, value: float) -> int:
    """VM steps (hundreds) of inserting one value row into the slot."""
    return _steps(conn, lambda: _add_value(conn, pk, value, 7))


def _steps_of_removing(conn: Any, pk: int) -> int:
    """VM steps (hundreds) of deleting one value row."""
    return _steps(
        conn,
        lambda: conn.execute(text("DELETE FROM idx_observation_value WHERE resource_pk = :pk"), {"pk": pk}),
    )


def test_sqlite_adds_a_value_to_a_full_slot_as_cheaply_as_to_an_empty_one(tmp_path: Any) -> None:
    """SQLite's row trigger adds a new value to its slot's measures instead of recomputing the slot:
    a recompute per row made a slot's inserts quadratic (775 ms of a 1,270 ms transaction of 500
    Observations into slots of 2,000 values). Fails on the recomputing trigger (the 2,002nd value
    cost 923 hundred steps, the first 2). After deletes the slot stays equal to a rebuild."""
    from fhir_server.store.engine import make_engine
    from fhir_server.store.migrate import upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'rollup.db'}")
    upgrade(engine)
    try:
        with engine.begin() as conn:
            first = _steps_of_one_more_value(conn, 1, 60.0)
            for pk in range(2, 2002):
                _add_value(conn, pk, float(pk % 90), pk % 15)
            full = _steps_of_one_more_value(conn, 3000, 61.5)
        assert full < 2 * first + 5, (first, full)
        kept, rebuilt = _slots(engine)
        assert kept == rebuilt and kept[0][9] == 2002
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM idx_observation_value WHERE resource_pk IN (1, 3000, 89)"))
        kept, rebuilt = _slots(engine)
        assert kept == rebuilt and kept[0][9:13] == (1999, rebuilt[0][10], 0.0, 89.0)
    finally:
        engine.dispose()


def test_sqlite_removes_a_value_from_a_full_slot_as_cheaply_as_from_a_small_one(tmp_path: Any) -> None:
    """SQLite's delete trigger subtracts a value lying strictly between its slot's minimum and maximum
    from the count and the sum, and recomputes the slot only when a minimum or maximum leaves it: a
    recompute per row made deleting a slot's values quadratic. Fails on the recomputing trigger (a
    value of the 2,000-value slot cost as many steps as the slot has rows). The slot stays equal to a
    GROUP BY rebuild after middle values, extremes and finally every value are removed."""
    from fhir_server.store.engine import make_engine
    from fhir_server.store.migrate import upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'rollup.db'}")
    upgrade(engine)
    try:
        with engine.begin() as conn:
            for pk, value in ((1, 10.0), (2, 20.0), (3, 30.0)):
                _add_value(conn, pk, value, 1)
            small = _steps_of_removing(conn, 2)  # 20 lies between 10 and 30
            for pk in range(10, 2010):
                _add_value(conn, pk, float(pk % 90), pk % 15)
            full = _steps_of_removing(conn, 1045)  # 55: between the slot's 0 and 89
        assert full < 2 * small + 5, (small, full)
        kept, rebuilt = _slots(engine)
        assert kept == rebuilt and kept[0][9] == 2001
        with engine.begin() as conn:  # extremes: every 0 and 89, and the 10 and 30 that are not
            conn.execute(
                text(
                    "DELETE FROM idx_observation_value WHERE resource_pk IN (1, 3) OR resource_pk % 90 IN (0, 89)"
                )
            )
        kept, rebuilt = _slots(engine)
        assert kept == rebuilt and kept[0][11:13] == (1.0, 88.0)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM idx_observation_value"))
        kept, rebuilt = _slots(engine)
        assert kept == rebuilt == []
    finally:
        engine.dispose()


def test_sqlite_removes_values_tied_at_an_extreme_without_recomputing_the_slot(tmp_path: Any) -> None:
    """A value equal to its slot's minimum or maximum leaves the measure unchanged when another value
    of the slot ties with it, so SQLite's delete trigger subtracts it instead of recomputing the slot.
    Recomputing made deleting a slot of equal values (a resting heart rate, a step count of 0, a 1 Hz
    SpO2 of 98) quadratic: every value is both the minimum and the maximum. Fails on the trigger that
    recomputed at every extreme (a value of the 2,000-value slot cost as many steps as the slot has
    rows). The slot stays equal to a GROUP BY rebuild as the ties, then the last value, leave."""
    from fhir_server.store.engine import make_engine
    from fhir_server.store.migrate import upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'rollup.db'}")
    upgrade(engine)
    try:
        with engine.begin() as conn:
            for pk in (1, 2, 3):
                _add_value(conn, pk, 98.0, 1)
            small = _steps_of_removing(conn, 2)  # 98 ties with the two others
            for pk in range(10, 2010):
                _add_value(conn, pk, 98.0, pk % 15)
            full = _steps_of_removing(conn, 1045)
        assert full < 2 * small + 5, (small, full)
        kept, rebuilt = _slots(engine)
        assert kept == rebuilt and kept[0][9:13] == (2001, 2001 * 98.0, 98.0, 98.0)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM idx_observation_value WHERE resource_pk <> 3"))
        kept, rebuilt = _slots(engine)
        assert kept == rebuilt and kept[0][9:13] == (1, 98.0, 98.0, 98.0)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM idx_observation_value"))
        assert _slots(engine) == ([], [])
    finally:
        engine.dispose()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(st.sampled_from([1.0, 2.0, 2.0, 3.0, 5.0]), min_size=1, max_size=12),
    canon=st.lists(st.one_of(st.none(), st.sampled_from([10.0, 20.0, 20.0])), min_size=12, max_size=12),
    order=st.randoms(use_true_random=False),
)
def test_sqlite_slots_stay_exact_as_tied_and_untied_values_leave_in_any_order(
    tmp_path: Any, values: list[float], canon: list[float | None], order: Any
) -> None:
    """Oracle: after each delete, in any order, of values with many ties (and canonical values, some
    missing) in two neighbouring slots, the SQLite rollup equals a GROUP BY of the value rows left
    (store/observation_rollup.py `_sqlite_delete_trigger`)."""
    from fhir_server.store.engine import make_engine
    from fhir_server.store.migrate import upgrade

    path = tmp_path / f"rollup-{order.random()}.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    try:
        with engine.begin() as conn:
            for pk, value in enumerate(values, start=1):
                _add_value(conn, pk, value, (pk * 7) % 30, canon=canon[pk - 1])  # two slots
        pks = list(range(1, len(values) + 1))
        order.shuffle(pks)
        for pk in pks:
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM idx_observation_value WHERE resource_pk = :pk"), {"pk": pk})
            kept, rebuilt = _slots(engine, canonical=True)
            assert kept == rebuilt
    finally:
        engine.dispose()
        path.unlink(missing_ok=True)
