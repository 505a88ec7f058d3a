"""Database engines for the store: PostgreSQL (psycopg 3) and SQLite (WAL, busy timeout, immediate writes).

https://docs.sqlalchemy.org/en/20/dialects/sqlite.html#serializable-isolation-savepoints-transactional-ddl
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url


def normalise_url(url: str) -> str:
    """Accept postgres:// and postgresql:// URLs and use the psycopg 3 driver for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 20,
    pre_ping: bool = False,
    connect_timeout: int | None = None,
) -> Engine:
    """Create the engine; SQLite gets WAL mode, a busy timeout and BEGIN IMMEDIATE for write transactions.

    `pre_ping` tests each pooled connection at checkout and `connect_timeout` (seconds) bounds a
    connection attempt: read replicas use both, so a replica that went away is noticed before a read."""
    url = normalise_url(url)
    parsed = make_url(url)
    logging.getLogger("sqlalchemy.engine.Engine").addFilter(_without_rows)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=max_overflow,
            hide_parameters=True,  # bound parameters hold patient data: never in errors or logs
        )
        _sqlite_setup(engine)
        return engine
    connect_args = {} if connect_timeout is None else {"connect_timeout": connect_timeout}
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=pre_ping,
        hide_parameters=True,
        connect_args=connect_args,
    )


def _without_rows(record: logging.LogRecord) -> bool:
    """Drop the fetched rows SQLAlchemy logs at DEBUG: they are resource content (statements stay)."""
    return not (record.levelno == logging.DEBUG and record.msg == "Row %r")


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        # Truncate the WAL back to 64 MiB whenever it restarts (it only grows otherwise).
        cur.execute("PRAGMA journal_size_limit=67108864")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.info.get("sqlite_begin", "BEGIN")
        conn.exec_driver_sql(mode)


def is_sqlite(engine: Engine) -> bool:
    """True for the embedded SQLite store."""
    return engine.dialect.name == "sqlite"
