"""`fhir-server reindex` rebuilds exactly the index rows the write path writes."""

from __future__ import annotations

from sqlalchemy import delete, select

from fhir_server.interactions import create
from fhir_server.interactions.context import Context
from fhir_server.settings import Settings
from fhir_server.store import tables
from fhir_server.store.reindex import reindex
from fhir_server.store.sql import Store
from tests import factories


def _index(store: Store) -> dict[str, list[tuple[object, ...]]]:
    out = {}
    with store.engine.connect() as conn:
        for kind, table in tables.INDEX_TABLES.items():
            columns = [c for c in table.columns if not c.primary_key]  # a row key (idx_text.id) is new
            out[kind] = sorted(tuple(row) for row in conn.execute(select(*columns)))
    return out


def test_reindex_restores_the_rows_the_writes_made(store: Store) -> None:
    ctx = Context(store=store, settings=Settings(base_url="http://testserver"))
    with store.write() as tx:
        pid = create.create(ctx, tx, "Patient", factories.patient()).stored.res_id
        for value in (60, 70, 80):
            create.create(ctx, tx, "Observation", factories.observation(pid, value=value))
    written = _index(store)
    assert sum(len(rows) for rows in written.values()) > 20
    with store.engine.begin() as conn:
        for table in tables.INDEX_TABLES.values():
            conn.execute(delete(table))
    assert sum(len(rows) for rows in _index(store).values()) == 0
    assert reindex(store.engine, batch=2) == 4
    assert _index(store) == written
