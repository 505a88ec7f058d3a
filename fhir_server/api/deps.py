"""Request dependencies as named Annotated aliases (https://fastapi.tiangolo.com/tutorial/dependencies/)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from ..audit import access as audit
from ..auth.keys import InvalidToken
from ..auth.principal import Principal as AuthPrincipal
from ..errors import Unauthorized
from ..interactions.context import Context
from ..store import replicas
from ..structured_logs import note_client

ANONYMOUS = AuthPrincipal(client_id="anonymous", kind="anonymous-dev")


async def get_principal(request: Request) -> AuthPrincipal:
    """The caller, from `Authorization: Bearer <access token>` (https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#access-fhir-api).

    No token: 401, unless FHIR_ALLOW_ANONYMOUS is on (then the `anonymous-dev` principal). A token
    that is not valid, expired, revoked or for another audience: 401 `error="invalid_token"`
    (RFC 6750 section 3.1).
    """
    # Async: FastAPI runs a sync dependency in the threadpool, a hop per request; only the token
    # verification, which may query the store, goes there.
    ctx: Context = request.app.state.context
    realm = f'Bearer realm="{ctx.settings.base}"'
    header = request.headers.get("authorization")
    if header is None:
        if ctx.settings.allow_anonymous:
            audit.note_caller(ANONYMOUS)
            note_client(ANONYMOUS.client_id)
            return ANONYMOUS
        raise Unauthorized("An access token is required", headers={"WWW-Authenticate": realm})
    # The token is checked on the primary (a token issued a moment ago may not be on a replica yet),
    # whatever reader the context this request started from names (store/replicas.py).
    replicas.reader.set(None)
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "Send the access token as 'Authorization: Bearer <token>'", headers={"WWW-Authenticate": realm}
        )
    try:
        principal: AuthPrincipal = await run_in_threadpool(
            request.app.state.auth.bearer.principal, token.strip()
        )
    except InvalidToken:
        challenge = realm + ', error="invalid_token", error_description="The access token is not valid"'
        raise Unauthorized("The access token is not valid", headers={"WWW-Authenticate": challenge}) from None
    audit.note_caller(principal)
    note_client(principal.client_id)
    return principal


Principal = Annotated[AuthPrincipal, Depends(get_principal)]


def get_context(request: Request, principal: Principal) -> Context:
    """The interaction context built at start-up (store, settings), carrying the caller."""
    ctx: Context = request.app.state.context
    # Reads of this request may go to a replica, unless this caller wrote recently (store/replicas.py).
    replicas.reader.set(replicas.reader_key(principal.client_id, principal.subject))
    return replace(ctx, principal=principal)


async def _context(request: Request, principal: Principal) -> Context:
    """`get_context` as an async dependency: FastAPI runs sync ones in the threadpool (a hop per request)."""
    return get_context(request, principal)


Ctx = Annotated[Context, Depends(_context)]


def get_public_context(request: Request) -> Context:
    """The context for public endpoints (`/metadata`): no caller."""
    ctx: Context = request.app.state.context
    return ctx


PublicCtx = Annotated[Context, Depends(get_public_context)]
