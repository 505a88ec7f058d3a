"""Logging a user in at the authorization server, rate limited (https://www.rfc-editor.org/rfc/rfc6749#section-10.10).

Password (Argon2id) and, when the user enrolled one, a TOTP code that cannot be replayed. Failed
attempts are counted per (user, client address), per user and per address over a sliding window;
past the limit, logins are refused without checking the password. Only digests of the counting keys
are stored, and no message says whether the username exists.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, insert, or_, select, update

from ..store.sql import Store
from . import opaque_token, passwords, totp, users
from .tables import auth_user, login_attempt
from .users import User

WINDOW = 300  # seconds
# (key kind, failures allowed within WINDOW): 5 per user and address, more for a user or an address
# alone (a shared address, or guessing spread over many addresses).
LIMITS = (("pair", 5), ("user", 20), ("address", 50))


class LoginRefused(Exception):
    """The login failed; `throttled` when too many attempts failed recently."""

    def __init__(self, throttled: bool = False) -> None:
        self.throttled = throttled
        super().__init__("too many failed attempts" if throttled else "invalid username, password or code")


@dataclass(frozen=True)
class LoginAttempt:
    username: str
    password: str
    code: str = ""
    address: str = "unknown"


def log_in(store: Store, attempt: LoginAttempt, *, clock: Callable[[], float] = time.time) -> User:
    """The user, when credentials (and TOTP code, if enrolled) are right; else `LoginRefused`."""
    now = int(clock())
    keys = _keys(attempt)
    with store.read() as tx:
        if _throttled(tx.conn, keys, now):
            raise LoginRefused(throttled=True)
        user = users.get_by_username(tx.conn, attempt.username)
    if user is None:
        passwords.verify_password(_dummy_hash(), attempt.password)  # same cost as for a real user
        ok = False
    else:
        ok = passwords.verify_password(user.password_hash, attempt.password)
    with store.write() as tx:
        if ok and user is not None and user.totp_secret is not None:
            ok = _use_totp(tx.conn, user, attempt.code, now)
        if not ok:
            tx.conn.execute(delete(login_attempt).where(login_attempt.c.at < now - WINDOW))
            tx.conn.execute(insert(login_attempt), [{"key_hash": key, "at": now} for key, _ in keys])
    if not ok or user is None:
        raise LoginRefused()
    return user


def _keys(attempt: LoginAttempt) -> list[tuple[str, int]]:
    name = attempt.username.strip().lower()
    limits = dict(LIMITS)
    return [
        (opaque_token.digest(f"pair:{name}:{attempt.address}"), limits["pair"]),
        (opaque_token.digest(f"user:{name}"), limits["user"]),
        (opaque_token.digest(f"address:{attempt.address}"), limits["address"]),
    ]


def _throttled(conn: Connection, keys: list[tuple[str, int]], now: int) -> bool:
    counts: dict[str, int] = dict(
        conn.execute(
            select(login_attempt.c.key_hash, func.count())
            .where(login_attempt.c.key_hash.in_([k for k, _ in keys]), login_attempt.c.at >= now - WINDOW)
            .group_by(login_attempt.c.key_hash)
        ).all()
    )
    return any(counts.get(key, 0) >= limit for key, limit in keys)


def _use_totp(conn: Connection, user: User, code: str, now: int) -> bool:
    """Verify the code and record its time step atomically, so it cannot be used twice."""
    assert user.totp_secret is not None
    step = totp.verify(totp.decode_secret(user.totp_secret), code, now, last_used_step=user.totp_last_step)
    if step is None:
        return False
    done = conn.execute(
        update(auth_user)
        .where(
            auth_user.c.pk == user.pk,
            or_(auth_user.c.totp_last_step.is_(None), auth_user.c.totp_last_step < step),
        )
        .values(totp_last_step=step)
    )
    return done.rowcount == 1


@functools.cache
def _dummy_hash() -> str:
    return passwords.hash_password(opaque_token.new())
