"""Logged tracebacks keep types, error codes and frames, never exception messages."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from fhir_server.redacted_traceback import format_exception

SECRET = "Przybyszewski"


def _raise_chain() -> None:
    try:
        {}[SECRET]
    except KeyError as exc:
        raise ValueError(f"no {SECRET}") from exc


def test_the_chain_is_kept_with_frames_and_types_but_no_messages() -> None:
    with pytest.raises(ValueError) as info:
        _raise_chain()
    out = format_exception(info.value)
    assert SECRET not in out
    assert out.index("KeyError (message withheld)") < out.index("ValueError (message withheld)")
    assert "in _raise_chain" in out


def test_a_database_error_shows_its_error_code_not_its_values() -> None:
    engine = create_engine("sqlite://")
    with pytest.raises(IntegrityError) as info, engine.connect() as conn:
        conn.execute(text("CREATE TABLE t (a TEXT NOT NULL UNIQUE)"))
        conn.execute(text("INSERT INTO t VALUES (:a)"), {"a": SECRET})
        conn.execute(text("INSERT INTO t VALUES (:a)"), {"a": SECRET})
    out = format_exception(info.value)
    assert SECRET not in out
    assert "sqlalchemy.exc.IntegrityError [SQLITE_CONSTRAINT_UNIQUE]" in out
    assert isinstance(info.value.orig, sqlite3.IntegrityError)
