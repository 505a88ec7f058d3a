"""Self-service account changes: a new password, and two-step sign-in with TOTP (NIST SP 800-63B 6.1.2).

A password change needs the current password (checked under the same throttle as logins, so the
page is no way around it), a new one that meets `password_policy`, and ends every grant the user's
apps hold: their refresh tokens and the access tokens of those grants, and the user's other account
sessions. TOTP enrolment shows a new secret, and requires it at login only once the person typed a
valid code from their authenticator app; that code's time step counts as used.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import Connection, select

from ..store.sql import Store
from . import account_session, login_throttle, password_policy, passwords, totp, users
from .account_session import Session
from .tables import authorization_code, refresh_token
from .tokens import revoke_grant
from .users import User


class AccountRefused(Exception):
    """The change was not made; the message is for the person, `status` for the page."""

    def __init__(self, message: str, status: int = 400, retry_after: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def check_new_password(new: str, repeated: str, username: str) -> None:
    """Refuse a new password the policy rejects, or whose repetition differs."""
    try:
        password_policy.check(new, username)
    except password_policy.WeakPassword as weak:
        raise AccountRefused(str(weak)) from None
    if new != repeated:
        raise AccountRefused("The two new passwords differ.")


def change_password(
    store: Store,
    session: Session,
    current: str,
    new: str,
    repeated: str,
    *,
    address: str,
    clock: Callable[[], float] = time.time,
) -> User:
    """Set a new password for the signed-in user and end their apps' grants and other sessions."""
    now = int(clock())
    assert session.user_pk is not None
    with store.read() as tx:
        user = users.get(tx.conn, session.user_pk)
        if user is None:
            raise AccountRefused("Please sign in again.", 403)
        keys = login_throttle.keys(user.username, address)
        wait = login_throttle.wait_seconds(tx.conn, keys, now)
    if wait > 0:
        raise AccountRefused(_wait_message(wait), 429, wait)
    if not passwords.verify_password(user.password_hash, current):
        with store.write() as tx:
            login_throttle.record_failure(tx.conn, keys, now)
        raise AccountRefused("The current password is not correct.", 401)
    check_new_password(new, repeated, user.username)
    if new == current:
        raise AccountRefused("The new password must differ from the current one.")
    new_hash = passwords.hash_password(new)
    with store.write() as tx:
        users.set_password_hash(tx.conn, user.pk, new_hash)
        end_grants(tx.conn, user.pk)
        account_session.close_others(tx.conn, session)
        login_throttle.record_success(tx.conn, keys)
    return user


def end_grants(conn: Connection, user_pk: int) -> int:
    """Revoke every grant (refresh and access tokens) the user's apps hold; returns how many."""
    grants = {
        row.grant_id
        for table in (refresh_token, authorization_code)
        for row in conn.execute(select(table.c.grant_id).where(table.c.user_pk == user_pk).distinct())
    }
    for grant_id in sorted(grants):
        revoke_grant(conn, grant_id)
    return len(grants)


def start_totp(store: Store, session: Session) -> Session:
    """A new secret for the signed-in user, kept with the session until a code confirms it."""
    with store.write() as tx:
        return account_session.set_pending_totp(tx.conn, session, totp.generate_secret())


def confirm_totp(
    store: Store, session: Session, code: str, *, clock: Callable[[], float] = time.time
) -> User:
    """Require TOTP at login from now on, when `code` is valid for the secret being enrolled."""
    assert session.user_pk is not None
    if session.pending_totp is None:
        raise AccountRefused("Start the set-up again: no secret is waiting for a code.")
    step = totp.verify(totp.decode_secret(session.pending_totp), code, clock())
    if step is None:
        raise AccountRefused("That code is not correct. Check the time on your device and try again.")
    with store.write() as tx:
        user = users.get(tx.conn, session.user_pk)
        if user is None:
            raise AccountRefused("Please sign in again.", 403)
        users.set_totp(tx.conn, user.pk, session.pending_totp, step)
        account_session.set_pending_totp(tx.conn, session, None)
    return user


def _wait_message(wait: int) -> str:
    return f"Too many failed attempts. Please try again in {wait} second{'s' * (wait != 1)}."
