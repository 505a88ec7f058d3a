"""The Alembic migrations build exactly the schema the code declares, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from fhir_server.store import schema
from fhir_server.store.engine import make_engine
from fhir_server.store.migrate import include_name, upgrade
from tests.conftest import BACKENDS, _pg_database


@pytest.mark.parametrize("backend", BACKENDS)
def test_upgrade_from_empty_matches_the_declared_tables(backend: str, tmp_path: Path) -> None:
    gen = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'm.db'}"
    else:
        gen = _pg_database("migrations")
        url = next(gen)
    engine = make_engine(url)
    try:
        upgrade(engine)
        upgrade(engine)  # idempotent
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_name": include_name})
            diff = compare_metadata(context, schema.metadata)
        assert diff == []
    finally:
        engine.dispose()
        if gen is not None:
            next(gen, None)


def test_postgres_migration_creates_the_token_statistics() -> None:
    if "postgres" not in BACKENDS:
        pytest.skip("PostgreSQL is excluded by FHIR_TEST_BACKENDS")
    gen = _pg_database("stats")
    engine = make_engine(next(gen))
    try:
        upgrade(engine)
        with engine.connect() as conn:
            names = {row[0] for row in conn.exec_driver_sql("SELECT stxname FROM pg_statistic_ext")}
        assert "st_idx_token_code" in names
    finally:
        engine.dispose()
        next(gen, None)


_SQLITE_OBJECTS = (
    "SELECT type || ' ' || name, sql FROM sqlite_master WHERE type = 'trigger' OR name LIKE 'idx_text_fts%'"
)
_POSTGRES_OBJECTS = (  # each (what, definition): what compare_metadata does not compare
    "SELECT 'trigger ' || tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal",
    "SELECT 'function ' || p.proname, pg_get_functiondef(p.oid) FROM pg_proc p"
    " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = current_schema()",
    "SELECT 'statistics ' || stxname, pg_get_statisticsobjdef(oid) FROM pg_statistic_ext",
    "SELECT 'index ' || indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
    " AND tablename <> 'alembic_version'",
    "SELECT 'column ' || table_name || '.' || column_name,"
    " concat_ws(' ', column_default, generation_expression) FROM information_schema.columns"
    " WHERE table_schema = current_schema() AND (column_default IS NOT NULL OR is_generated = 'ALWAYS')",
    "SELECT 'options ' || a.attrelid::regclass || '.' || a.attname, o.option FROM pg_attribute a"
    " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace,"
    " unnest(a.attoptions) AS o (option) WHERE n.nspname = current_schema() AND starts_with(o.option, 'n_distinct')",
)


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrations_leave_the_sql_objects_the_code_declares(backend: str, tmp_path: Path) -> None:
    """The SQL objects `compare_metadata` does not compare (triggers and their functions, extended
    statistics, the full-text index, column defaults and options) of a database brought up by the
    migrations are those `schema.metadata.create_all` makes from the code: a trigger changed in the
    code (store/observation_rollup.py) without `scripts/gen_migration` run again fails here."""

    def objects(engine: Any) -> dict[str, str]:
        queries = (_SQLITE_OBJECTS,) if backend == "sqlite" else _POSTGRES_OBJECTS
        with engine.connect() as conn:
            return {what: sql for query in queries for what, sql in conn.exec_driver_sql(query).all()}

    made: list[Iterator[str]] = []

    def url(name: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / name}.db"
        made.append(_pg_database(name))
        return next(made[-1])

    migrated, declared = make_engine(url("migrated")), make_engine(url("declared"))
    try:
        upgrade(migrated)
        schema.metadata.create_all(declared)
        found, expected = objects(migrated), objects(declared)
        assert any(what.endswith("observation_rollup_delete") for what in expected), sorted(expected)
        assert found == expected
    finally:
        migrated.dispose()
        declared.dispose()
        for gen in made:
            next(gen, None)
