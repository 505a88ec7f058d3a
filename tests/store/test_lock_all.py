"""`Store.lock_all`: the advisory locks of many keys in one statement, the same ones `Store.lock` takes
(https://www.postgresql.org/docs/15/explicit-locking.html#ADVISORY-LOCKS)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from fhir_server.store.sql import Store

_HELD = text(
    "SELECT (classid::int8 << 32) | objid::int8 FROM pg_locks"
    " WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
)


def _held(store: Store, lock: str, keys: list[str]) -> set[int]:
    with store.write() as tx:
        if lock == "all":
            store.lock_all(tx, keys)
        else:
            for key in keys:
                store.lock(tx, key)
        return {int(row[0]) for row in tx.conn.execute(_HELD)}


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)  # SQLite: BEGIN IMMEDIATE, no keys
@settings(max_examples=25, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=40).filter(lambda k: "\x00" not in k), max_size=12))
def test_lock_all_holds_exactly_the_locks_lock_takes_key_by_key(store: Store, keys: list[str]) -> None:
    """Whatever the keys hold (quotes, backslashes, line breaks, any script; criteria are client
    text), the keys passed as one JSON array lock what `lock` locks one by one: a conditional create
    of a single entry and an ingest chunk naming the same criteria queue on the same lock."""
    assert _held(store, "all", keys) == _held(store, "each", keys)
