"""What the self-service pages share over HTTP: the session cookie, the posted form with its token, the page response.

The session and its form token are `auth/account_session.py`; here they meet the request: the
cookie (HttpOnly, SameSite=Strict, path `/auth` below the base URL's path, Secure on https), the urlencoded form (the login
pages' reader and limits), the client address (as the login throttle sees it) and the page headers
of the login pages (no caching, no framing, a strict Content-Security-Policy).
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import Request, Response
from fastapi.responses import HTMLResponse

from ..auth import account_session
from ..auth.account_session import Session
from ..auth.oauth_error import OAuthError
from ..auth.server import AuthorizationServer
from .auth_routes import _PAGE_HEADERS, _form, root, server
from .client_address import client_address

COOKIE = "fhir_account_session"
EXPIRED = "This page has expired. Please try again."


def html(
    request: Request, page: str, status: int = 200, *, session: Session | None = None, retry_after: int = 0
) -> Response:
    headers = {**_PAGE_HEADERS, **({"Retry-After": str(retry_after)} if retry_after else {})}
    response = HTMLResponse(page, status, headers)
    if session is not None:
        response.set_cookie(
            COOKIE,
            session.cookie,
            max_age=account_session.LIFETIME,
            path=root(request) + "/auth",
            secure=server(request).base.startswith("https://"),
            httponly=True,
            samesite="strict",
        )
    return response


def address(request: Request) -> str:
    return client_address(
        request.client.host if request.client else None,
        request.headers.getlist("x-forwarded-for"),
        request.app.state.trusted_proxies,
    )


async def submitted(request: Request) -> dict[str, str] | None:
    """The posted form (the first value of each field), or None when it is not a readable form."""
    try:
        return dict(reversed(await _form(request)))
    except OAuthError:  # not urlencoded, too large, not UTF-8
        return None


def session_of(auth: AuthorizationServer, request: Request, form: Mapping[str, str]) -> Session | None:
    with auth.store.read() as tx:
        return account_session.find(
            tx.conn, request.cookies.get(COOKIE), form.get("csrf"), now=int(auth.clock())
        )


def new_session(auth: AuthorizationServer, user_pk: int | None = None, old: Session | None = None) -> Session:
    with auth.store.write() as tx:
        if old is not None:
            account_session.close(tx.conn, old)
        return account_session.open_session(tx.conn, now=int(auth.clock()), user_pk=user_pk)
