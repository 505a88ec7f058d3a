"""Token revocation (https://www.rfc-editor.org/rfc/rfc7009).

A client revokes its own access or refresh token. Revoking a refresh token also revokes the access
tokens of the same grant (RFC 7009 section 2.1: "SHOULD also invalidate all access tokens based on
the same authorization grant"). Unknown tokens, or tokens of another client, are answered the same
as success, so nothing is revealed about them.
"""

from __future__ import annotations

from sqlalchemy import select, update

from . import opaque_token
from .bearer import BearerValidator
from .keys import InvalidToken
from .tables import access_token, refresh_token
from .tokens import revoke_grant


def revoke(validator: BearerValidator, token: str, client_id: str) -> None:
    """Revoke `token` if it is one of `client_id`'s."""
    try:
        claims = validator.claims(token, check_expiry=False)
    except InvalidToken:
        claims = None
    with validator.store.write() as tx:
        if claims is not None:
            tx.conn.execute(
                update(access_token)
                .where(access_token.c.jti == claims["jti"], access_token.c.client_id == client_id)
                .values(revoked=True)
            )
            return
        row = tx.conn.execute(
            select(refresh_token.c.grant_id, refresh_token.c.client_id).where(
                refresh_token.c.token_hash == opaque_token.digest(token)
            )
        ).first()
        if row is not None and row.client_id == client_id:
            revoke_grant(tx.conn, row.grant_id)
