"""The resource server's check of a Bearer access token (https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#access-fhir-api).

"The resource server SHALL validate the access token and ensure that it has not expired": the JWT
must carry our signature, `iss` and `aud` equal to this FHIR base URL, an `exp` in the future, and
a `jti` we issued and have not revoked. The result is the request's `Principal`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from ..store.sql import Store
from . import caregiver, privacy_consent
from .keys import InvalidToken, SigningKeys
from .principal import KINDS, Principal
from .scopes import ScopeSet, parse
from .tables import access_token

LEEWAY = 0  # our own clock signs and checks: no skew to forgive


@dataclass
class BearerValidator:
    """Turns access tokens into principals."""

    store: Store
    keys: Callable[[], SigningKeys]
    base: str
    clock: Callable[[], float] = time.time

    def claims(self, token: str, *, check_expiry: bool = True) -> dict[str, Any]:
        """The verified claims of one of our access tokens (any `exp` when `check_expiry` is off)."""
        now = self.clock() if check_expiry else 0.0
        claims = self.keys().verify_jwt(token, audience=self.base, issuer=self.base, now=now, leeway=LEEWAY)
        if not isinstance(claims.get("jti"), str) or claims.get("kind") not in KINDS:
            raise InvalidToken("not an access token")
        return claims

    def active(self, jti: str) -> bool:
        """The token was recorded as issued, is not revoked and has not expired."""
        with self.store.read() as tx:
            row = tx.conn.execute(
                select(access_token.c.revoked, access_token.c.expires_at).where(access_token.c.jti == jti)
            ).first()
        return row is not None and not row.revoked and row.expires_at > self.clock()

    def principal(self, token: str) -> Principal:
        """The principal behind a valid, unrevoked access token; raises `InvalidToken`."""
        claims = self.claims(token)
        if not self.active(claims["jti"]):
            raise InvalidToken("token was revoked")
        try:
            principal = Principal(
                client_id=str(claims.get("client_id")),
                kind=claims["kind"],
                scopes=_scopes(str(claims.get("scope", ""))),
                subject=claims.get("sub"),
                fhir_user=claims.get("fhirUser"),
                patient=claims.get("patient"),
                encounter=claims.get("encounter"),
            )
        except ValueError as error:
            raise InvalidToken("token claims are not valid") from error
        if not caregiver.still_linked(self.store, principal.fhir_user, principal.patient):
            raise InvalidToken("the caregiver's link to this patient is no longer active")
        return privacy_consent.attach(self.store, principal)  # Consent denies naming this caller


@functools.lru_cache(maxsize=1024)
def _scopes(scope: str) -> ScopeSet:
    return parse(scope)
