"""Registered SMART clients (https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#register-app-with-ehr).

Three kinds, after SMART's client profiles: `public` (no client authentication), `symmetric`
(`client-confidential-symmetric`: a secret the server generates, shown once, stored as a SHA-256
digest) and `asymmetric` (`client-confidential-asymmetric`: a JWK Set registered inline and/or a
JWKS URL). Redirect URIs are matched exactly. `scope` holds the scopes an asymmetric client is
pre-authorised for as a Backend Services client.
"""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args
from urllib.parse import urlsplit

from sqlalchemy import Connection, insert, select

from . import opaque_token
from .client_assertion import RegisteredClient
from .scopes import parse
from .tables import oauth_client

ClientType = Literal["public", "symmetric", "asymmetric"]
CLIENT_TYPES: tuple[ClientType, ...] = get_args(ClientType)
_CLIENT_ID = re.compile(r"[A-Za-z0-9._~\-]{1,128}")
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")


class RegistrationError(ValueError):
    """A client registration that we refuse; the message says why."""


@dataclass(frozen=True)
class Client:
    """A registered client, as the authorization server sees it."""

    client_id: str
    client_type: ClientType
    name: str = ""
    redirect_uris: tuple[str, ...] = ()
    scope: str = ""
    jwks: Mapping[str, Any] | None = None
    jwks_uri: str | None = None
    secret_hash: str | None = field(default=None, repr=False)

    @property
    def confidential(self) -> bool:
        return self.client_type != "public"

    def key_registration(self) -> RegisteredClient:
        """What `private_key_jwt` verification needs to know about this client."""
        return RegisteredClient(self.client_id, jwks_uri=self.jwks_uri, jwks=self.jwks)

    def secret_matches(self, secret: str) -> bool:
        """Constant-time check of a presented client secret."""
        if self.secret_hash is None:
            return False
        return hmac.compare_digest(opaque_token.digest(secret), self.secret_hash)

    def public_view(self) -> dict[str, Any]:
        """The registration as the admin API and CLI show it (no secret, no digest)."""
        out: dict[str, Any] = {
            "client_id": self.client_id,
            "type": self.client_type,
            "name": self.name,
            "redirect_uris": list(self.redirect_uris),
            "scope": self.scope,
        }
        if self.jwks_uri:
            out["jwks_uri"] = self.jwks_uri
        if self.jwks is not None:
            out["jwks"] = dict(self.jwks)
        return out


def register(
    conn: Connection,
    client_id: str,
    client_type: str,
    *,
    redirect_uris: Iterable[str] = (),
    jwks: Mapping[str, Any] | None = None,
    jwks_uri: str | None = None,
    scope: str = "",
    name: str = "",
    now: int | None = None,
) -> tuple[Client, str | None]:
    """Register a client; returns it and, for a symmetric client, its new secret (shown only now)."""
    if not _CLIENT_ID.fullmatch(client_id):
        raise RegistrationError("client_id must be 1-128 characters of [A-Za-z0-9._~-]")
    if client_type not in CLIENT_TYPES:
        raise RegistrationError(f"client type must be one of {', '.join(CLIENT_TYPES)}")
    uris = tuple(dict.fromkeys(redirect_uris))
    for uri in uris:
        _check_redirect_uri(uri)
    if client_type != "asymmetric" and not uris:
        raise RegistrationError("a public or symmetric client needs at least one redirect URI")
    if client_type != "asymmetric" and (jwks is not None or jwks_uri):
        raise RegistrationError("only asymmetric clients register keys")
    if client_type == "asymmetric":
        if jwks is None and not jwks_uri:
            raise RegistrationError("an asymmetric client registers a JWK Set or a JWKS URL")
        if jwks is not None:
            _check_jwks(jwks)
        if jwks_uri:
            _check_jwks_uri(jwks_uri)
    granted = parse(scope)
    if granted.ignored:
        raise RegistrationError(f"unknown scopes: {' '.join(granted.ignored)}")
    secret = opaque_token.new() if client_type == "symmetric" else None
    if conn.execute(select(oauth_client.c.client_id).where(oauth_client.c.client_id == client_id)).first():
        raise RegistrationError(f"client {client_id} is already registered")
    client = Client(
        client_id,
        cast(ClientType, client_type),
        name,
        uris,
        granted.to_string(),
        dict(jwks) if jwks is not None else None,
        jwks_uri or None,
        opaque_token.digest(secret) if secret else None,
    )
    conn.execute(
        insert(oauth_client).values(
            client_id=client.client_id,
            client_type=client.client_type,
            name=client.name,
            secret_hash=client.secret_hash,
            jwks=json.dumps(client.jwks) if client.jwks is not None else None,
            jwks_uri=client.jwks_uri,
            redirect_uris=json.dumps(list(client.redirect_uris)),
            scope=client.scope,
            created_at=int(time.time()) if now is None else now,
        )
    )
    return client, secret


def get(conn: Connection, client_id: str) -> Client | None:
    """The registered client with this id, or None."""
    row = conn.execute(select(oauth_client).where(oauth_client.c.client_id == client_id)).first()
    return _client(row) if row is not None else None


def all_clients(conn: Connection) -> list[Client]:
    """Every registered client, by id."""
    rows = conn.execute(select(oauth_client).order_by(oauth_client.c.client_id))
    return [_client(row) for row in rows]


def _client(row: Any) -> Client:
    return Client(
        client_id=row.client_id,
        client_type=row.client_type,
        name=row.name or "",
        redirect_uris=tuple(json.loads(row.redirect_uris or "[]")),
        scope=row.scope or "",
        jwks=json.loads(row.jwks) if row.jwks else None,
        jwks_uri=row.jwks_uri,
        secret_hash=row.secret_hash,
    )


def _check_redirect_uri(uri: str) -> None:
    """An absolute URI without a fragment (RFC 6749 section 3.1.2); no wildcards, matched exactly."""
    parts = urlsplit(uri)
    if len(uri) > 2048:
        raise RegistrationError("redirect URI longer than 2048 characters")
    if not parts.scheme or parts.fragment or "#" in uri or "*" in uri or any(c.isspace() for c in uri):
        raise RegistrationError(f"redirect URI must be absolute, without fragment or wildcard: {uri!r}")
    if parts.scheme in ("http", "https") and not parts.hostname:
        raise RegistrationError(f"redirect URI has no host: {uri!r}")
    if parts.scheme.lower() in ("javascript", "data", "file", "vbscript"):
        raise RegistrationError(f"redirect URI scheme not allowed: {uri!r}")


def _check_jwks_uri(uri: str) -> None:
    parts = urlsplit(uri)
    local = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and local):
        raise RegistrationError("a JWKS URL must use https (http only on localhost)")


def _check_jwks(jwks: Mapping[str, Any]) -> None:
    """Public RSA or EC keys with a `kid` each; private members are refused, not silently kept."""
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list) or not keys:
        raise RegistrationError("a JWK Set is an object with a non-empty 'keys' array")
    for key in keys:
        if not isinstance(key, Mapping) or key.get("kty") not in ("RSA", "EC"):
            raise RegistrationError("each registered key must be an RSA or EC JWK")
        if not isinstance(key.get("kid"), str) or not key["kid"]:
            raise RegistrationError("each registered key needs a kid")
        if any(member in key for member in _PRIVATE_MEMBERS):
            raise RegistrationError("register public keys only (the JWK contains private members)")
