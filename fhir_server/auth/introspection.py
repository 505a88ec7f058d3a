"""Token introspection (https://hl7.org/fhir/smart-app-launch/STU2.2/token-introspection.html, RFC 7662).

An active access token is described with `active`, `scope`, `client_id`, `exp` (the same instant as
the original `expires_in`), `iat`, `token_type`, `iss` and `sub` (as in the ID token), `fhirUser`,
and the launch context parameters of the original token response (`patient`, `encounter`,
`fhirContext`, `need_patient_banner`, `intent`). Active refresh tokens are described too. Anything
else - expired, revoked, unknown, not ours - is just `{"active": false}`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from . import opaque_token
from .bearer import BearerValidator
from .keys import InvalidToken
from .tables import access_token, refresh_token

INACTIVE: dict[str, Any] = {"active": False}


def introspect(
    validator: BearerValidator, token: str, *, clock: Callable[[], float] = time.time
) -> dict[str, Any]:
    """RFC 7662 section 2.2 response for `token`."""
    now = clock()
    try:
        claims = validator.claims(token)
    except InvalidToken:
        return _refresh_token(validator, token, now)
    with validator.store.read() as tx:
        row = tx.conn.execute(select(access_token).where(access_token.c.jti == claims["jti"])).first()
    if row is None or row.revoked or row.expires_at <= now:
        return dict(INACTIVE)
    out: dict[str, Any] = {
        "active": True,
        "token_type": "Bearer",
        "scope": claims.get("scope", ""),
        "client_id": claims.get("client_id"),
        "exp": claims["exp"],
        "iat": claims.get("iat"),
        "iss": claims.get("iss"),
        "sub": claims.get("sub"),
        "aud": claims.get("aud"),
    }
    if claims.get("fhirUser"):
        out["fhirUser"] = f"{validator.base}/{claims['fhirUser']}"
    out.update(json.loads(row.context or "{}"))
    return out


def _refresh_token(validator: BearerValidator, token: str, now: float) -> dict[str, Any]:
    with validator.store.read() as tx:
        row = tx.conn.execute(
            select(refresh_token).where(refresh_token.c.token_hash == opaque_token.digest(token))
        ).first()
    if row is None or row.revoked or row.expires_at <= now:
        return dict(INACTIVE)
    return {
        "active": True,
        "token_type": "refresh_token",
        "scope": row.scope,
        "client_id": row.client_id,
        "exp": row.expires_at,
        "iat": row.issued_at,
        "iss": validator.base,
        **({"sub": f"user-{row.user_pk}"} if row.user_pk is not None else {}),
    }
