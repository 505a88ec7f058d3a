"""Authorization codes: single use, short-lived, bound to client, redirect URI and PKCE challenge (https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2).

"If an authorization code is used more than once, the authorization server MUST deny the request
and SHOULD revoke (when possible) all tokens previously issued based on that authorization code."
`redeem()` marks the code used in the same statement that checks it was unused, so two concurrent
exchanges cannot both succeed; the loser learns the code's `grant_id` to revoke its tokens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from . import opaque_token
from .tables import authorization_code

LIFETIME = 60  # seconds


class InvalidCode(Exception):
    """Unknown or expired code."""


class CodeReused(Exception):
    """The code was already exchanged; its tokens must be revoked."""

    def __init__(self, grant_id: str) -> None:
        super().__init__("authorization code was already used")
        self.grant_id = grant_id


@dataclass(frozen=True)
class CodeGrant:
    """What the user granted, as carried by a code to the token endpoint."""

    grant_id: str
    client_id: str
    user_pk: int | None
    redirect_uri: str
    scope: str
    code_challenge: str
    nonce: str | None
    context: dict[str, Any]
    auth_time: int


def issue(conn: Connection, grant: CodeGrant, *, now: int, lifetime: int = LIFETIME) -> str:
    """Store the grant under a new code and return the code."""
    code = opaque_token.new()
    conn.execute(delete(authorization_code).where(authorization_code.c.expires_at < now - 86400))
    conn.execute(
        insert(authorization_code).values(
            code_hash=opaque_token.digest(code),
            grant_id=grant.grant_id,
            client_id=grant.client_id,
            user_pk=grant.user_pk,
            redirect_uri=grant.redirect_uri,
            scope=grant.scope,
            code_challenge=grant.code_challenge,
            nonce=grant.nonce,
            context=json.dumps(grant.context),
            auth_time=grant.auth_time,
            expires_at=now + lifetime,
        )
    )
    return code


def redeem(conn: Connection, code: str, *, now: int) -> CodeGrant:
    """Use the code (once). Raises `InvalidCode`, or `CodeReused` when it was used before."""
    key = opaque_token.digest(code)
    row = conn.execute(select(authorization_code).where(authorization_code.c.code_hash == key)).first()
    if row is None:
        raise InvalidCode("unknown authorization code")
    first = conn.execute(
        update(authorization_code)
        .where(authorization_code.c.code_hash == key, authorization_code.c.used_at.is_(None))
        .values(used_at=now)
    )
    if first.rowcount != 1:
        raise CodeReused(row.grant_id)
    if row.expires_at < now:
        raise InvalidCode("authorization code expired")
    return CodeGrant(
        grant_id=row.grant_id,
        client_id=row.client_id,
        user_pk=row.user_pk,
        redirect_uri=row.redirect_uri,
        scope=row.scope,
        code_challenge=row.code_challenge,
        nonce=row.nonce,
        context=json.loads(row.context),
        auth_time=row.auth_time,
    )
