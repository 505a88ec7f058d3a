"""Tracebacks for the log without exception messages, which may quote patient data (R4 security.html).

A database driver's message repeats the offending value (PostgreSQL: `DETAIL: Key (x)=(Smith)
already exists`), a KeyError its key, a ValueError its input. What is logged instead: the exception
types of the chain, the SQLSTATE or SQLite error name when there is one, and the stack frames (code,
never values).
"""

from __future__ import annotations

import traceback


def format_exception(exc: BaseException) -> str:
    """The traceback of `exc` and its causes, each exception given by its type and error code only."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = "".join(traceback.format_tb(current.__traceback__))
        parts.append(f"Traceback (most recent call last):\n{frames}{_kind(current)} (message withheld)")
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return "\n\nwhich led to\n\n".join(reversed(parts))


def _kind(exc: BaseException) -> str:
    """`module.Type` plus the error code of a database error, e.g. `[SQLSTATE 23505]`."""
    cls = type(exc)
    name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    driver_error = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error in .orig
    code = getattr(driver_error, "sqlstate", None) or getattr(driver_error, "sqlite_errorname", None)
    return f"{name} [{code}]" if isinstance(code, str) else name
