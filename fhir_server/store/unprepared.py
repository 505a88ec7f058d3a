"""Run a search statement (built by search/) unprepared on PostgreSQL (https://www.psycopg.org/psycopg3/docs/advanced/prepare.html).

psycopg prepares a statement run often; PostgreSQL then soon plans a prepared search once for any
values (a generic plan), which was 10-30x slower than a plan made for the values at hand
(bench/bench_search.py). So every search statement runs with preparation off.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, CursorResult, Executable


def execute(conn: Connection, stmt: Executable, memory_mb: int | None = None) -> CursorResult[Any]:
    """Run a search statement unprepared on PostgreSQL, so it is planned for its own values.

    `memory_mb` raises work_mem for the rest of the transaction (SET LOCAL), so a GROUP BY of many
    groups is planned as a hash in memory instead of a sort spilled to disk (the default is 4 MB);
    https://www.postgresql.org/docs/15/runtime-config-resource.html#GUC-WORK-MEM."""
    if conn.dialect.name != "postgresql":
        return conn.execute(stmt)
    raw: Any = conn.connection.driver_connection
    if memory_mb is not None:
        raw.execute(f"SET LOCAL work_mem = '{int(memory_mb)}MB'")
    saved = raw.prepare_threshold
    raw.prepare_threshold = None
    try:
        return conn.execute(stmt)
    finally:
        raw.prepare_threshold = saved
