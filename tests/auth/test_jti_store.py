"""Used client-assertion jtis shared through the database (fhir_server/auth/jti_store.py)."""

from __future__ import annotations

from fhir_server.auth.jti_store import DatabaseJtiStore
from fhir_server.store.sql import Store


def test_a_jti_is_accepted_once_per_client(store: Store) -> None:
    # SHALL 336
    first, second = DatabaseJtiStore(store), DatabaseJtiStore(store)  # two worker processes
    assert first.remember("c1", "j1", 2_000_000_000)
    assert not second.remember("c1", "j1", 2_000_000_000)
    assert second.remember("c2", "j1", 2_000_000_000)


def test_jtis_of_any_length_are_kept(store: Store) -> None:
    jtis = DatabaseJtiStore(store)
    assert jtis.remember("c1", "x" * 5000, 2_000_000_000)
    assert not jtis.remember("c1", "x" * 5000, 2_000_000_000)


def test_expired_jtis_are_pruned(store: Store) -> None:
    now = [2_000_000_000.0]
    jtis = DatabaseJtiStore(store, clock=lambda: now[0])
    assert jtis.remember("c1", "old", int(now[0]) + 60)
    now[0] += 3600
    assert jtis.remember("c1", "new", int(now[0]) + 60)  # prunes "old" on the way
    with store.read() as tx:
        from sqlalchemy import func, select

        from fhir_server.auth.tables import used_jti

        assert tx.conn.execute(select(func.count()).select_from(used_jti)).scalar_one() == 1
