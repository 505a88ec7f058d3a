"""The authorization request and its state until consent (https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#obtain-authorization-code).

`validate()` applies SMART's rules to the parameters of `/auth/authorize` (GET query or POST form):
a registered client and an exactly matching `redirect_uri` (else nothing is redirected: RFC 6749
section 4.1.2.1), `response_type=code`, a `state`, `aud` equal to this server's FHIR base URL, PKCE
with S256 for every client, a `launch` the server issued, and scopes it understands. The accepted
request is kept server-side (`begin`) under an unguessable handle while the user logs in, picks a
patient and consents; only the handle's digest is stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import Connection, delete, insert, select, update

from . import opaque_token, pkce
from .clients import Client
from .launch import LaunchContext
from .scopes import ScopeSet, parse
from .tables import authorization_request

PENDING_LIFETIME = 900  # seconds from /auth/authorize to the consent decision
_SINGLE = frozenset(
    {"response_type", "client_id", "redirect_uri", "scope", "state", "aud", "launch"}
    | {"code_challenge", "code_challenge_method", "nonce"}
)


class AuthorizeError(Exception):
    """An authorization request we refuse. With `redirect_uri` the app is told by redirect
    (`error`, `error_description`, `state`); without, only the user sees an error page."""

    def __init__(
        self, error: str, description: str, *, redirect_uri: str | None = None, state: str | None = None
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.redirect_uri = redirect_uri
        self.state = state

    def location(self) -> str | None:
        """Where to send the browser, or None when the redirect URI could not be trusted."""
        if self.redirect_uri is None:
            return None
        params = {"error": self.error, "error_description": self.description}
        if self.state is not None:
            params["state"] = self.state
        return with_query(self.redirect_uri, params)


@dataclass(frozen=True)
class AuthorizationRequest:
    """A valid authorization request."""

    client: Client
    redirect_uri: str
    scope: ScopeSet
    state: str
    code_challenge: str
    nonce: str | None = None
    context: LaunchContext = field(default_factory=LaunchContext)
    ehr_launch: bool = False


@dataclass(frozen=True)
class Pending:
    """An accepted request waiting for login, patient choice and consent."""

    client_id: str
    redirect_uri: str
    scope: ScopeSet
    state: str
    code_challenge: str
    nonce: str | None
    context: LaunchContext
    ehr_launch: bool
    session_hash: str | None
    user_pk: int | None
    auth_time: int | None


def with_query(uri: str, params: dict[str, str]) -> str:
    """`uri` with `params` added to its query component (keeping what it had; RFC 6749 section 3.1.2)."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def validate(
    params: Sequence[tuple[str, str]],
    *,
    fhir_base: str,
    lookup_client: Callable[[str], Client | None],
    resolve_launch: Callable[[str], LaunchContext | None],
    resource_types: Container[str] | None = None,
) -> AuthorizationRequest:
    """Check an authorization request; raise `AuthorizeError` (redirectable once the client and
    redirect URI are trusted)."""
    values: dict[str, str] = {}
    repeated = set()
    for name, value in params:
        if name in values and name in _SINGLE:
            repeated.add(name)
        values.setdefault(name, value)
    client_id = values.get("client_id", "")
    client = lookup_client(client_id) if client_id else None
    if client is None:
        raise AuthorizeError("invalid_request", "unknown client_id")
    redirect_uri = values.get("redirect_uri", "")
    if not redirect_uri or redirect_uri not in client.redirect_uris or "redirect_uri" in repeated:
        raise AuthorizeError("invalid_request", "redirect_uri is not one registered for this client")
    state = values.get("state")

    def refuse(error: str, description: str) -> AuthorizeError:
        return AuthorizeError(error, description, redirect_uri=redirect_uri, state=state or None)

    if repeated:
        raise refuse("invalid_request", f"parameters sent more than once: {', '.join(sorted(repeated))}")
    if values.get("response_type") != "code":
        raise refuse("unsupported_response_type", "response_type must be code")
    if not state or not state.strip():
        raise refuse("invalid_request", "state is required")
    aud = values.get("aud", "")
    if not aud or aud.rstrip("/") != fhir_base.rstrip("/"):
        raise refuse("invalid_request", "aud must be this server's FHIR base URL")
    try:
        challenge = pkce.check_challenge(values.get("code_challenge"), values.get("code_challenge_method"))
    except pkce.PkceError as error:
        raise refuse("invalid_request", str(error)) from None
    scope = parse(values.get("scope"), resource_types=resource_types)
    if not (scope.resources or scope.launch or scope.named):
        raise refuse("invalid_scope", "no scope this server supports was requested")
    context, ehr = LaunchContext(), False
    if "launch" in values:
        launched = resolve_launch(values["launch"])
        if launched is None:
            raise refuse("invalid_request", "launch is not a launch this server issued, or it expired")
        context, ehr = launched, True
    nonce = values.get("nonce") or None
    return AuthorizationRequest(client, redirect_uri, scope, state, challenge, nonce, context, ehr)


def begin(conn: Connection, request: AuthorizationRequest, *, now: int) -> str:
    """Keep the request until consent; returns its handle (for the pages' hidden form field)."""
    handle = opaque_token.new()
    conn.execute(delete(authorization_request).where(authorization_request.c.expires_at < now))
    conn.execute(
        insert(authorization_request).values(
            id_hash=opaque_token.digest(handle),
            client_id=request.client.client_id,
            redirect_uri=request.redirect_uri,
            scope=request.scope.to_string(),
            state=request.state,
            code_challenge=request.code_challenge,
            nonce=request.nonce,
            context=json.dumps(request.context.as_json()),
            ehr_launch=request.ehr_launch,
            expires_at=now + PENDING_LIFETIME,
        )
    )
    return handle


def load(conn: Connection, handle: str, *, now: int) -> Pending | None:
    """The pending request behind a handle, unless it expired or was finished."""
    row = conn.execute(
        select(authorization_request).where(authorization_request.c.id_hash == opaque_token.digest(handle))
    ).first()
    if row is None or row.expires_at < now:
        return None
    return Pending(
        client_id=row.client_id,
        redirect_uri=row.redirect_uri,
        scope=parse(row.scope),
        state=row.state,
        code_challenge=row.code_challenge,
        nonce=row.nonce,
        context=LaunchContext.from_json(json.loads(row.context)),
        ehr_launch=bool(row.ehr_launch),
        session_hash=row.session_hash,
        user_pk=row.user_pk,
        auth_time=row.auth_time,
    )


def logged_in(conn: Connection, handle: str, *, user_pk: int, session: str, now: int) -> None:
    """Bind the request to the user who logged in and to their browser session."""
    _set(conn, handle, user_pk=user_pk, session_hash=opaque_token.digest(session), auth_time=now)


def set_context(conn: Connection, handle: str, context: LaunchContext) -> None:
    """Record the launch context (e.g. the patient the user picked)."""
    _set(conn, handle, context=json.dumps(context.as_json()))


def finish(conn: Connection, handle: str) -> bool:
    """Forget the request (it was decided); False when it was already gone (a second submit)."""
    done = conn.execute(
        delete(authorization_request).where(authorization_request.c.id_hash == opaque_token.digest(handle))
    )
    return done.rowcount == 1


def _set(conn: Connection, handle: str, **values: Any) -> None:
    conn.execute(
        update(authorization_request)
        .where(authorization_request.c.id_hash == opaque_token.digest(handle))
        .values(**values)
    )
