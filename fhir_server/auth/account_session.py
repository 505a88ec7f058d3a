"""Browser sessions of the self-service account pages, with their CSRF form token (https://cheatsheetseries.owasp.org/cheatsheets/Cross-Site_Request_Forgery_Prevention_Cheat_Sheet.html#synchronizer-token-pattern).

A page that shows a form opens (or keeps) a session: a random cookie value and a random form token,
both stored as digests. Every POST must bring the cookie AND the form token of that session, as the
login pages need their cookie and request handle; another site can send the cookie but cannot read
the token. Signing in replaces the anonymous session with a new one bound to the user (no session
fixation); sessions end after `LIFETIME` seconds, at sign-out, and when the password changes.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from sqlalchemy import Connection, delete, insert, select, update

from . import opaque_token
from .tables import account_session

LIFETIME = 15 * 60


@dataclass(frozen=True)
class Session:
    cookie: str
    csrf: str  # the form token (hidden field of every form of this session)
    user_pk: int | None = None
    pending_totp: str | None = None  # a TOTP secret shown but not yet confirmed with a code


def open_session(conn: Connection, *, now: int, user_pk: int | None = None) -> Session:
    """A new session (anonymous, or signed in as `user_pk`); expired sessions are pruned."""
    conn.execute(delete(account_session).where(account_session.c.expires_at < now))
    session = Session(opaque_token.new(), opaque_token.new(), user_pk)
    conn.execute(
        insert(account_session).values(
            session_hash=opaque_token.digest(session.cookie),
            csrf_hash=opaque_token.digest(session.csrf),
            user_pk=user_pk,
            pending_totp=None,
            expires_at=now + LIFETIME,
        )
    )
    return session


def find(conn: Connection, cookie: str | None, csrf: str | None, *, now: int) -> Session | None:
    """The live session of this cookie, when the form brought its token; else None."""
    if not cookie or not csrf or len(cookie) > 128 or len(csrf) > 128:
        return None
    row = conn.execute(
        select(account_session).where(account_session.c.session_hash == opaque_token.digest(cookie))
    ).first()
    if row is None or row.expires_at < now:
        return None
    if not hmac.compare_digest(row.csrf_hash, opaque_token.digest(csrf)):
        return None
    return Session(cookie, csrf, row.user_pk, row.pending_totp)


def set_pending_totp(conn: Connection, session: Session, secret: str | None) -> Session:
    _set(conn, session.cookie, pending_totp=secret)
    return Session(session.cookie, session.csrf, session.user_pk, secret)


def close(conn: Connection, session: Session) -> None:
    conn.execute(
        delete(account_session).where(account_session.c.session_hash == opaque_token.digest(session.cookie))
    )


def close_others(conn: Connection, session: Session) -> None:
    """End every other session of the same user (after a password change)."""
    conn.execute(
        delete(account_session).where(
            account_session.c.user_pk == session.user_pk,
            account_session.c.session_hash != opaque_token.digest(session.cookie),
        )
    )


def close_all(conn: Connection, user_pk: int) -> None:
    """End every session of the user (after a password reset)."""
    conn.execute(delete(account_session).where(account_session.c.user_pk == user_pk))


def _set(conn: Connection, cookie: str, **values: object) -> None:
    conn.execute(
        update(account_session)
        .where(account_session.c.session_hash == opaque_token.digest(cookie))
        .values(**values)
    )
