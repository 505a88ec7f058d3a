"""Password recovery without mail: operator-issued reset links (https://cheatsheetseries.owasp.org/cheatsheets/Forgot_Password_Cheat_Sheet.html#url-tokens).

The server sends no mail, so the operator makes the link (`fhir-server users reset-link <username>`)
and hands it to the person by a channel they trust. The link carries a 256-bit random token
(`opaque_token`), single use and expiring; only its digest is stored, and a new link for a user
replaces the open one. Setting the new password through it follows the password policy and, like a
password change (`account.change_password`), ends every grant the user's apps hold and every
account session of the user. Wrong or spent tokens are throttled per client address like logins
(`login_throttle.reset_keys`); the two-step sign-in (TOTP), if any, stays as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, delete, insert, select, update

from ..store.sql import Store
from . import account, account_session, login_throttle, opaque_token, passwords, users
from .account import AccountRefused
from .tables import password_reset
from .users import User

DEFAULT_HOURS = 24
MAX_HOURS = 7 * 24
PATH = "/auth/reset"  # below the base URL; the token is the `token` query parameter
PRUNE_AFTER = 30 * 24 * 3600  # used or expired links are kept this long, then pruned
INVALID = "This reset link is not valid: it has expired, was already used or was replaced. Ask for a new one."


@dataclass(frozen=True)
class ResetLink:
    token: str  # shown only once, in the link
    expires_at: int


def issue(conn: Connection, user_pk: int, *, hours: int = DEFAULT_HOURS, now: int) -> ResetLink:
    """A new link for the user, valid `hours` hours; the user's open link, if any, stops working."""
    if not 1 <= hours <= MAX_HOURS:
        raise ValueError(f"a reset link is valid for 1 to {MAX_HOURS} hours")
    conn.execute(delete(password_reset).where(password_reset.c.expires_at < now - PRUNE_AFTER))
    conn.execute(
        delete(password_reset).where(password_reset.c.user_pk == user_pk, password_reset.c.used_at.is_(None))
    )
    token = opaque_token.new()
    expires = now + hours * 3600
    conn.execute(
        insert(password_reset).values(
            token_hash=_digest(token), user_pk=user_pk, created_at=now, expires_at=expires, used_at=None
        )
    )
    return ResetLink(token, expires)


def url(base: str, token: str) -> str:
    """The link to hand over: the reset page under the base URL."""
    return f"{base.rstrip('/')}{PATH}?token={token}"


def holder(conn: Connection, token: str, *, now: int) -> User | None:
    """The user whose open, unexpired link this is (without using it); None otherwise."""
    if not 20 <= len(token) <= 128:
        return None
    row = conn.execute(
        select(password_reset.c.user_pk, password_reset.c.expires_at, password_reset.c.used_at).where(
            password_reset.c.token_hash == _digest(token)
        )
    ).first()
    if row is None or row.used_at is not None or row.expires_at < now:
        return None
    return users.get(conn, row.user_pk)


def check_link(store: Store, token: str, *, address: str, clock: Callable[[], float] = time.time) -> User:
    """The user of a usable link (the reset page shows its form); `AccountRefused` when throttled or unusable."""
    now = int(clock())
    keys = login_throttle.reset_keys(address)
    with store.read() as tx:
        wait = login_throttle.wait_seconds(tx.conn, keys, now)
        user = None if wait > 0 else holder(tx.conn, token, now=now)
    if wait > 0:
        raise AccountRefused(_wait_message(wait), 429, wait)
    if user is None:
        with store.write() as tx:
            login_throttle.record_failure(tx.conn, keys, now)
        raise AccountRefused(INVALID, 404)
    return user


def reset(
    store: Store,
    token: str,
    new: str,
    repeated: str,
    *,
    address: str,
    clock: Callable[[], float] = time.time,
) -> User:
    """Spend the link and set the new password; ends the user's grants and sessions."""
    user = check_link(store, token, address=address, clock=clock)
    account.check_new_password(new, repeated, user.username)
    new_hash = passwords.hash_password(new)
    now = int(clock())
    with store.write() as tx:
        spent = tx.conn.execute(
            update(password_reset)
            .where(
                password_reset.c.token_hash == _digest(token),
                password_reset.c.user_pk == user.pk,
                password_reset.c.used_at.is_(None),
                password_reset.c.expires_at >= now,
            )
            .values(used_at=now)
        )
        if spent.rowcount != 1:  # used by a concurrent request, or expired meanwhile
            raise AccountRefused(INVALID, 404)
        users.set_password_hash(tx.conn, user.pk, new_hash)
        account.end_grants(tx.conn, user.pk)
        account_session.close_all(tx.conn, user.pk)
        login_throttle.record_success(tx.conn, login_throttle.reset_keys(address))
    return user


def _digest(token: str) -> str:
    return opaque_token.digest("reset:" + token)


def _wait_message(wait: int) -> str:
    return f"Too many attempts. Please try again in {wait} second{'s' * (wait != 1)}."
