"""Fresh planner statistics after and before bulk work (https://www.postgresql.org/docs/15/sql-analyze.html).

A bulk import can multiply a table's size faster than autovacuum (if it runs at all) re-analyzes it;
with stale statistics PostgreSQL plans an export's `res_type = X ORDER BY pk` as "fetch every row of
the type, then sort" instead of walking the primary key. `refresh(store, tables)` runs ANALYZE on the
tables whose rows changed by more than a fifth since they were last analyzed (or never were).
SQLite needs nothing here. Writes through every other path (and these too, a little later, off the
request path) are followed by store/autoanalyze.py, which analyzes on both databases.

`analyze(store, tables)` analyzes unconditionally: a bulk import calls it for `resource` once it has
written a few thousand resources of a type the statistics may not know (jobs/import_.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import bindparam, text

from .tables import INDEX_TABLES

if TYPE_CHECKING:
    from .sql import Store

RESOURCE_TABLES = ("resource", "resource_version")
ALL_TABLES = (*RESOURCE_TABLES, *(table.name for table in INDEX_TABLES.values()))
_STALE = text(
    "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname IN :names "
    "AND ((last_analyze IS NULL AND last_autoanalyze IS NULL)"
    " OR n_mod_since_analyze > 0.2 * GREATEST(n_live_tup, 1000))"
).bindparams(bindparam("names", expanding=True))


def refresh(store: Store, tables: tuple[str, ...] = RESOURCE_TABLES) -> list[str]:
    """ANALYZE the stale ones of `tables`; returns their names."""
    if store.sqlite:
        return []
    with store.engine.connect() as conn:
        stale = [str(name) for name in conn.execute(_STALE, {"names": list(tables)}).scalars()]
    analyze(store, tuple(stale))
    return stale


def analyze(store: Store, tables: tuple[str, ...]) -> None:
    """ANALYZE `tables` now (PostgreSQL; nothing on SQLite or without tables: no connection taken)."""
    if store.sqlite or not tables:
        return
    with store.engine.connect() as conn:
        for name in tables:
            conn.execute(text(f'ANALYZE "{name}"'))
        conn.commit()
