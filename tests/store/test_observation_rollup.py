"""observation_value_rollup under concurrent writers of one slot (store/observation_rollup.py; issue 12, acceptance 5).

The oracle tests of the series (tests/operations/test_observation_stats.py) prove the slots exact
after creates, updates and deletes one at a time; here two PostgreSQL transactions write value rows
of the same 15-minute slot at once, the second while the first is still open, and the slot must
count both (a recompute in the trigger's first snapshot would miss the other's committed value).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import Engine, text

from fhir_server.store import observation_rollup
from fhir_server.store.sql import Store

SUBJECT = "Patient/rollup-race"
AT = 1_711_846_800_000_000  # 2024-03-31T01:00:00Z: one slot from here on for 15 minutes


def _add_value(conn: Any, pk: int, value: float, minute: int) -> None:
    conn.execute(
        text(
            "INSERT INTO idx_observation_value (resource_pk, subject, system, code, grp, value_system,"
            " value_code, effective, value, unit, canon_value, canon_code) VALUES (:pk, :subject,"
            " 'http://loinc.org', '8867-4', 0, 'http://loinc.org', '8867-4', :at, :value, '/min', :value, '/min')"
        ),
        {"pk": pk, "subject": SUBJECT, "at": AT + minute * 60_000_000, "value": value},
    )


def _slots(engine: Engine) -> tuple[list[Any], list[Any]]:
    """(the rollup's slots with values, one GROUP BY of the value rows now)."""
    keys = ", ".join(observation_rollup.KEYS)
    with engine.connect() as conn:
        kept = conn.execute(
            text(f"SELECT {keys}, count, sum, minimum, maximum FROM observation_value_rollup WHERE count > 0")
        ).all()
        rebuilt = conn.execute(text(observation_rollup.GROUPED)).all()
    return sorted(tuple(r) for r in kept), sorted(tuple(r[:13]) for r in rebuilt)


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
