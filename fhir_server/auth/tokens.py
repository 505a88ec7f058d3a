"""Issuing access, ID and refresh tokens (https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#response-5).

Access tokens are JWTs signed with the server's RS256 key: `iss` and `aud` are the FHIR base URL,
`jti` names a row of `access_token` (so a token can be introspected and revoked), and the claims
carry what the resource server needs to build a `Principal` (client, kind, scopes, user, patient,
encounter). The ID token follows OpenID Connect Core section 2 with SMART's `fhirUser` claim as an
absolute URL. Refresh tokens are opaque, stored as digests, bound to the client and the grant's
scopes: `offline` ones last `refresh_token_days`, `online` ones as long as the login (8 hours).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, insert, update

from . import opaque_token
from .keys import SigningKeys
from .principal import Kind
from .scopes import ScopeSet
from .tables import access_token, refresh_token
from .users import User

TOKEN_TYPE = "Bearer"
ONLINE_LIFETIME = 8 * 3600  # an online refresh token ends with the login it came from
Access = Literal["offline", "online"]


@dataclass(frozen=True)
class Grant:
    """Everything a token is issued for."""

    grant_id: str
    client_id: str
    kind: Kind
    scope: ScopeSet
    user: User | None = None
    context: dict[str, Any] = field(default_factory=dict)  # patient, encounter, fhirContext, ...
    auth_time: int | None = None
    nonce: str | None = None


def new_grant_id() -> str:
    return uuid.uuid4().hex


def refresh_access(scope: ScopeSet) -> Access | None:
    """Which refresh token the grant's scopes ask for, if any."""
    if "offline_access" in scope.named:
        return "offline"
    if "online_access" in scope.named:
        return "online"
    return None


@dataclass
class TokenIssuer:
    """Signs and records tokens. `keys` is called when a key is first needed."""

    keys: Callable[[], SigningKeys]
    base: str
    access_seconds: int = 3600
    refresh_days: int = 90

    def issue(
        self,
        conn: Connection,
        grant: Grant,
        *,
        now: int,
        lifetime: int | None = None,
        refresh: Access | None = None,
        refresh_scope: ScopeSet | None = None,
        refresh_expires_at: int | None = None,
    ) -> dict[str, Any]:
        """The token response body (RFC 6749 section 5.1 plus SMART's launch context)."""
        seconds = self.access_seconds if lifetime is None else lifetime
        response: dict[str, Any] = {
            "access_token": self._access_token(conn, grant, now, seconds),
            "token_type": TOKEN_TYPE,
            "expires_in": seconds,
            "scope": grant.scope.to_string(),
            **grant.context,
        }
        if grant.user is not None and "openid" in grant.scope.named:
            response["id_token"] = self._id_token(grant, grant.user, now, seconds)
        if refresh is not None:
            response["refresh_token"] = self._refresh_token(
                conn, grant, refresh, refresh_scope or grant.scope, now, refresh_expires_at
            )
        return response

    def fhir_user_url(self, user: User | None) -> str | None:
        return f"{self.base}/{user.fhir_user}" if user is not None and user.fhir_user else None

    def _access_token(self, conn: Connection, grant: Grant, now: int, seconds: int) -> str:
        jti = uuid.uuid4().hex
        claims: dict[str, Any] = {
            "iss": self.base,
            "aud": self.base,
            "sub": grant.user.subject if grant.user is not None else grant.client_id,
            "client_id": grant.client_id,
            "scope": grant.scope.to_string(),
            "kind": grant.kind,
            "jti": jti,
            "iat": now,
            "exp": now + seconds,
        }
        if grant.user is not None and grant.user.fhir_user:
            claims["fhirUser"] = grant.user.fhir_user
        for name in ("patient", "encounter"):
            if grant.context.get(name):
                claims[name] = grant.context[name]
        conn.execute(
            insert(access_token).values(
                jti=jti,
                grant_id=grant.grant_id,
                client_id=grant.client_id,
                context=json.dumps(grant.context),
                issued_at=now,
                expires_at=now + seconds,
            )
        )
        return self.keys().sign_jwt(claims)

    def _id_token(self, grant: Grant, user: User, now: int, seconds: int) -> str:
        claims: dict[str, Any] = {
            "iss": self.base,
            "sub": user.subject,
            "aud": grant.client_id,
            "iat": now,
            "exp": now + seconds,
            "auth_time": grant.auth_time or now,
        }
        if grant.nonce:
            claims["nonce"] = grant.nonce
        if grant.scope.has("fhirUser") or grant.scope.has("profile"):
            url = self.fhir_user_url(user)
            if url:
                claims["fhirUser"] = url
        return self.keys().sign_jwt(claims)

    def _refresh_token(
        self,
        conn: Connection,
        grant: Grant,
        access: Access,
        scope: ScopeSet,
        now: int,
        expires_at: int | None,
    ) -> str:
        if expires_at is None:
            expires_at = (
                now + self.refresh_days * 86400
                if access == "offline"
                else (grant.auth_time or now) + ONLINE_LIFETIME
            )
        token = opaque_token.new()
        conn.execute(
            insert(refresh_token).values(
                token_hash=opaque_token.digest(token),
                grant_id=grant.grant_id,
                client_id=grant.client_id,
                user_pk=grant.user.pk if grant.user is not None else None,
                scope=scope.to_string(),
                context=json.dumps(grant.context),
                access=access,
                auth_time=grant.auth_time or now,
                issued_at=now,
                expires_at=expires_at,
            )
        )
        return token


def revoke_grant(conn: Connection, grant_id: str) -> None:
    """Revoke every access and refresh token issued under a grant."""
    conn.execute(update(access_token).where(access_token.c.grant_id == grant_id).values(revoked=True))
    conn.execute(update(refresh_token).where(refresh_token.c.grant_id == grant_id).values(revoked=True))
