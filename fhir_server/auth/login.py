"""Logging a user in at the authorization server, rate limited (https://www.rfc-editor.org/rfc/rfc6749#section-10.10).

Password (Argon2id) and, when the user enrolled one, a TOTP code that cannot be replayed. A wrong
password and a wrong or missing code are both failures, throttled with backoff per (user, client
address), per user and per address (`login_throttle`): while a key waits, logins are refused without
checking the password; a success forgets the pair's failures. No message says whether the username exists.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, or_, update

from ..store.sql import Store
from . import login_throttle, opaque_token, passwords, totp, users
from .tables import auth_user
from .users import User


class LoginRefused(Exception):
    """The login failed; `retry_after` > 0 (seconds) when it was throttled, not checked."""

    def __init__(self, retry_after: int = 0) -> None:
        self.retry_after = retry_after
        super().__init__(
            f"too many failed attempts, retry in {retry_after} s"
            if retry_after
            else "invalid username, password or code"
        )

    @property
    def throttled(self) -> bool:
        return self.retry_after > 0


@dataclass(frozen=True)
class LoginAttempt:
    username: str
    password: str
    code: str = ""
    address: str = "unknown"


def log_in(store: Store, attempt: LoginAttempt, *, clock: Callable[[], float] = time.time) -> User:
    """The user, when credentials (and TOTP code, if enrolled) are right; else `LoginRefused`."""
    now = int(clock())
    keys = login_throttle.keys(attempt.username, attempt.address)
    with store.read() as tx:
        wait = login_throttle.wait_seconds(tx.conn, keys, now)
        if wait > 0:
            raise LoginRefused(retry_after=wait)
        user = users.get_by_username(tx.conn, attempt.username)
    if user is None:
        passwords.verify_password(_dummy_hash(), attempt.password)  # same cost as for a real user
        ok = False
    else:
        ok = passwords.verify_password(user.password_hash, attempt.password)
    with store.write() as tx:
        if ok and user is not None and user.totp_secret is not None:
            ok = _use_totp(tx.conn, user, attempt.code, now)
        if ok:
            login_throttle.record_success(tx.conn, keys)
        else:
            login_throttle.record_failure(tx.conn, keys, now)
    if not ok or user is None:
        raise LoginRefused()
    return user


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
