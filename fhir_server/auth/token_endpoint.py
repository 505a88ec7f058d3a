"""The token endpoint: authorization_code, refresh_token and client_credentials grants (https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#obtain-access-token).

* `authorization_code` (app-launch.html#request-5): the code is single use (a reuse is refused and
  revokes every token it produced), bound to the client and the exact `redirect_uri`, and the PKCE
  `code_verifier` SHALL be present and match.
* `refresh_token` (app-launch.html#refresh-access-token): bound to the client; a `scope` parameter
  may narrow the grant, never widen it; refresh tokens rotate, and presenting a rotated one revokes
  the grant (it was probably stolen).
* `client_credentials` (backend-services.html#obtain-access-token): `private_key_jwt` clients only;
  the granted scopes are the requested `system/` scopes cut down to what the client was registered
  for; tokens live at most five minutes and come without a refresh token.

Failures that change state (a code marked used, a grant revoked) are committed before the error
is raised.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, select, update

from ..store.sql import Store
from . import authorization_code, opaque_token, pkce, users
from .client_authentication import Credentials
from .clients import Client
from .oauth_error import OAuthError
from .scopes import ScopeNotGranted, ScopeSet, grantable, narrow, parse
from .tables import refresh_token
from .tokens import Access, Grant, TokenIssuer, new_grant_id, refresh_access, revoke_grant

BACKEND_MAX_SECONDS = 300  # backend-services.html: access tokens SHOULD NOT exceed five minutes
_SINGLE = frozenset(
    {"grant_type", "code", "redirect_uri", "code_verifier", "refresh_token", "scope", "client_id"}
    | {"client_secret", "client_assertion", "client_assertion_type"}
)


@dataclass
class TokenEndpoint:
    """Answers token requests; `authenticate` identifies the client (see client_authentication)."""

    store: Store
    issuer: TokenIssuer
    authenticate: Callable[[Credentials], Client]
    resource_types: Container[str] | None = None
    clock: Callable[[], float] = time.time

    def token(self, form: Sequence[tuple[str, str]], authorization: str | None) -> dict[str, Any]:
        """The token response body; raises `OAuthError`."""
        values = _single_values(form)
        client = self.authenticate(Credentials.from_request(values, authorization))
        grant_type = values.get("grant_type")
        handlers = {
            "authorization_code": self._code,
            "refresh_token": self._refresh,
            "client_credentials": self._client_credentials,
        }
        if not grant_type:
            raise OAuthError("invalid_request", "grant_type is required")
        handler = handlers.get(grant_type)
        if handler is None:
            raise OAuthError("unsupported_grant_type", f"grant_type must be one of {', '.join(handlers)}")
        now = int(self.clock())
        with self.store.write() as tx:
            try:
                return handler(tx.conn, client, values, now)
            except _Refused as refused:  # commit what the refusal changed, then report it
                error = refused.error
        raise error

    def _code(self, conn: Connection, client: Client, values: dict[str, str], now: int) -> dict[str, Any]:
        code = values.get("code")
        if not code:
            raise _Refused("invalid_request", "code is required")
        try:
            granted = authorization_code.redeem(conn, code, now=now)
        except authorization_code.CodeReused as reused:
            revoke_grant(conn, reused.grant_id)
            raise _Refused(
                "invalid_grant", "authorization code was already used; its tokens are revoked"
            ) from None
        except authorization_code.InvalidCode as error:
            raise _Refused("invalid_grant", str(error)) from None
        if granted.client_id != client.client_id:
            raise _Refused("invalid_grant", "authorization code was issued to another client")
        if values.get("redirect_uri") != granted.redirect_uri:
            raise _Refused("invalid_grant", "redirect_uri differs from the authorization request")
        try:
            pkce.verify(values.get("code_verifier"), granted.code_challenge)
        except pkce.PkceError as error:
            raise _Refused("invalid_grant", str(error)) from None
        user = users.get(conn, granted.user_pk) if granted.user_pk is not None else None
        if user is None:
            raise _Refused("invalid_grant", "the user who granted access no longer exists")
        scope = parse(granted.scope)
        grant = Grant(
            granted.grant_id,
            client.client_id,
            user.kind,
            scope,
            user,
            granted.context,
            granted.auth_time,
            granted.nonce,
        )
        return self.issuer.issue(conn, grant, now=now, refresh=refresh_access(scope))

    def _refresh(self, conn: Connection, client: Client, values: dict[str, str], now: int) -> dict[str, Any]:
        token = values.get("refresh_token")
        if not token:
            raise _Refused("invalid_request", "refresh_token is required")
        key = opaque_token.digest(token)
        row = conn.execute(select(refresh_token).where(refresh_token.c.token_hash == key)).first()
        if row is None or row.client_id != client.client_id:
            raise _Refused("invalid_grant", "unknown refresh token")
        if row.revoked:
            revoke_grant(conn, row.grant_id)
            raise _Refused("invalid_grant", "refresh token was revoked or already used")
        if row.expires_at < now:
            raise _Refused("invalid_grant", "refresh token expired")
        user = users.get(conn, row.user_pk) if row.user_pk is not None else None
        if row.user_pk is not None and user is None:
            raise _Refused("invalid_grant", "the user who granted access no longer exists")
        original = parse(row.scope)
        requested = values.get("scope")
        try:
            scope = narrow(original, parse(requested) if requested and requested.strip() else None)
        except ScopeNotGranted as error:
            raise _Refused("invalid_scope", str(error)) from None
        conn.execute(update(refresh_token).where(refresh_token.c.token_hash == key).values(revoked=True))
        kind = user.kind if user is not None else "user"
        grant = Grant(
            row.grant_id, client.client_id, kind, scope, user, json.loads(row.context), row.auth_time
        )
        access = cast(Access, row.access)
        return self.issuer.issue(
            conn,
            grant,
            now=now,
            refresh=access,
            refresh_scope=original,
            refresh_expires_at=row.expires_at if access == "online" else None,
        )

    def _client_credentials(
        self, conn: Connection, client: Client, values: dict[str, str], now: int
    ) -> dict[str, Any]:
        if client.client_type != "asymmetric":
            raise _Refused(
                "unauthorized_client", "client_credentials is for Backend Services clients (private_key_jwt)"
            )
        requested = values.get("scope")
        if not requested or not requested.strip():
            raise _Refused("invalid_request", "scope is required")
        allowed = grantable(parse(requested, resource_types=self.resource_types), parse(client.scope))
        scope = ScopeSet(resources=frozenset(s for s in allowed.resources if s.context == "system"))
        if not scope.resources:
            raise _Refused("invalid_scope", "none of the requested scopes is authorized for this client")
        grant = Grant(new_grant_id(), client.client_id, "system", scope)
        lifetime = min(BACKEND_MAX_SECONDS, self.issuer.access_seconds)
        return self.issuer.issue(conn, grant, now=now, lifetime=lifetime)


class _Refused(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = OAuthError(error, description)


def _single_values(form: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Form parameters as a dict; a parameter sent twice is `invalid_request` (RFC 6749 section 3.2)."""
    values: dict[str, str] = {}
    for name, value in form:
        if name in values and name in _SINGLE:
            raise OAuthError("invalid_request", f"{name} was sent more than once")
        values.setdefault(name, value)
    return values
