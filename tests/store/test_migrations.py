"""The Alembic migrations build exactly the schema the code declares, on SQLite and on PostgreSQL."""

from __future__ import annotations

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


def test_sqlite_migrations_leave_the_triggers_the_code_declares(tmp_path: Path) -> None:
    """The triggers (and other SQL objects the ORM does not compare) of a SQLite database brought up by
    the migrations are those `schema.metadata.create_all` makes from the code: a trigger changed in
    the code (store/observation_rollup.py) without `scripts/gen_migration` run again fails here
    (`compare_metadata` above does not compare triggers)."""

    def objects(engine: Any) -> dict[str, str]:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name"
            ).all()
        return {name: sql for name, sql in rows}

    migrated = make_engine(f"sqlite:///{tmp_path / 'migrated.db'}")
    declared = make_engine(f"sqlite:///{tmp_path / 'declared.db'}")
    try:
        upgrade(migrated)
        schema.metadata.create_all(declared)
        found, expected = objects(migrated), objects(declared)
        assert "observation_rollup_delete" in expected
        assert found == expected
    finally:
        migrated.dispose()
        declared.dispose()
