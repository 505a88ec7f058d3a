"""Write contention the database reports: retried from scratch, then 409 (https://hl7.org/fhir/R4/http.html#concurrency).

Writers lock what they will change in one fixed order (`Store.lock_all`: advisory locks sorted by
their key's hash), so crossing writers queue instead of deadlocking. What still fails for contention
(a PostgreSQL deadlock 40P01 or serialization failure 40001, a SQLite file locked by another process)
leaves nothing behind, as the transaction rolled back: `retrying` runs the whole write again, a few
times with a short random pause, and then answers 409 with issue code `transient`, never a 500.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from ..errors import Conflict

T = TypeVar("T")

ATTEMPTS = 3
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


class Contended(Conflict):
    """The write collided with concurrent writers and did not get through; the client may retry."""

    code = "transient"


def is_transient(error: BaseException) -> bool:
    """True for a deadlock, a serialization failure or a locked SQLite database (wrapped or not)."""
    for exc in (error, getattr(error, "orig", None)):
        if getattr(exc, "sqlstate", None) in _TRANSIENT_SQLSTATES:
            return True
        if isinstance(exc, sqlite3.OperationalError):
            code = getattr(exc, "sqlite_errorcode", None)
            if code is not None:
                return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
            return "locked" in str(exc)
    return False


@contextmanager
def as_conflict() -> Iterator[None]:
    """Turn a transient database failure inside the block into `Contended` (409)."""
    try:
        yield
    except Exception as exc:
        if is_transient(exc):
            raise Contended(
                "The write collided with concurrent writes and was rolled back; retry it",
                headers={"Retry-After": "1"},
            ) from exc
        raise


def retrying(attempt: Callable[[], T], attempts: int = ATTEMPTS) -> T:
    """`attempt()`, run again from scratch while it fails with `Contended`, at most `attempts` times."""
    for n in range(attempts - 1):
        try:
            return attempt()
        except Contended:
            time.sleep(random.uniform(0.005, 0.02) * 2**n)  # jitter: colliding writers part ways
    return attempt()
