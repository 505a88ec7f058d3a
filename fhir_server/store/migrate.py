"""Schema migrations with Alembic, on SQLite and PostgreSQL (https://alembic.sqlalchemy.org/en/latest/api/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from .tables import FULL_TEXT_NAMES

_HERE = Path(__file__).parent / "migrations"


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic compares every schema object but the full-text index (store/tables.py FULL_TEXT_NAMES),
    which is DDL of its own: the FTS5 table (and SQLite's shadow tables of it) and the GIN index."""
    return name is None or not any(name.startswith(n) for n in FULL_TEXT_NAMES)


def config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema up to `revision`."""
    cfg = config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def is_current(engine: Engine) -> bool:
    """True when the database is at the newest revision (what `upgrade` would leave it at)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    heads = set(ScriptDirectory.from_config(config()).get_heads())
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads()) == heads


class NotReady(Exception):
    """The configured database is missing, unreachable, or not migrated (a one-line reason)."""


def open_current(url: str) -> Engine:
    """An engine on an existing database at the newest migration; `NotReady` otherwise. Unlike
    `make_engine`, a SQLite file that does not exist is never created."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from .engine import make_engine, normalise_url

    parsed = make_url(normalise_url(url))
    file = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if file not in (None, "", ":memory:") and not Path(str(file)).is_file():
        raise NotReady(f"no database file at {Path(str(file)).resolve()}")
    engine = make_engine(url)
    try:
        current = is_current(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise NotReady(f"cannot reach the database ({type(exc).__name__})") from None
    if not current:
        engine.dispose()
        raise NotReady("the database has no current schema")
    return engine
