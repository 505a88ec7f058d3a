"""HTTP endpoints of the SMART authorization server (https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html).

`/.well-known/smart-configuration`, `/.well-known/openid-configuration`, `/.well-known/jwks.json`,
`/auth/authorize` (GET and POST), the login / patient / consent forms, `/auth/token`,
`/auth/introspect` and `/auth/revoke`. Handlers translate HTTP to the plain calls of
`fhir_server.auth.server.AuthorizationServer` and render what comes back; no rule lives here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from ..audit import access as audit
from ..auth import pages
from ..auth.authorization_flow import ConsentStep, ErrorStep, LoginStep, Outcome, PatientStep, Redirect, Step
from ..auth.authorization_request import PENDING_LIFETIME
from ..auth.client_authentication import Credentials
from ..auth.keys import InvalidToken
from ..auth.login import LoginAttempt
from ..auth.oauth_error import OAuthError
from ..auth.server import AuthorizationServer
from ..auth.smart_configuration import openid_configuration, smart_configuration
from ..settings import Settings
from ..store.sql import Store
from . import admin_routes
from .client_address import client_address, trusted_networks

router = APIRouter()
SESSION_COOKIE = "fhir_auth_session"
MAX_FORM_BYTES = 64 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_PAGE_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def install(app: FastAPI, store: Store, settings: Settings) -> None:
    """Attach the authorization server to the app and route its endpoints (before the FHIR routes)."""
    app.state.auth = AuthorizationServer(store, settings)
    app.state.trusted_proxies = trusted_networks(settings.trusted_proxies)
    app.include_router(router)


def server(request: Request) -> AuthorizationServer:
    auth: AuthorizationServer = request.app.state.auth
    return auth


def root(request: Request) -> str:
    """The path of the base URL ("" or e.g. "/fhir"): the pages' links, form actions and cookie paths start with it."""
    return server(request).settings.base_path


async def _form(request: Request) -> list[tuple[str, str]]:
    """An application/x-www-form-urlencoded body, as ordered pairs (duplicates kept)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "send the parameters as application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise OAuthError("invalid_request", "request body too large")
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise OAuthError("invalid_request", "the form is not UTF-8") from None


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status, {**NO_STORE, **(headers or {})})


def _oauth_error(error: OAuthError) -> JSONResponse:
    return _json(error.body(), error.status, error.headers)


# ---------------- discovery ----------------
@router.get("/.well-known/smart-configuration")
async def smart_config(request: Request) -> JSONResponse:
    return JSONResponse(smart_configuration(server(request).base))


@router.get("/.well-known/openid-configuration")
async def openid_config(request: Request) -> JSONResponse:
    return JSONResponse(openid_configuration(server(request).base))


@router.get("/.well-known/jwks.json")
async def jwks(request: Request) -> JSONResponse:
    keys = await run_in_threadpool(server(request).keys)
    return JSONResponse(keys.jwks(), headers={"Cache-Control": "public, max-age=3600"})


# ---------------- authorization (browser) ----------------
def _render(step: Step, request: Request, session: str | None = None) -> Response:
    response: Response
    if isinstance(step, Redirect):
        status = 302 if request.method == "GET" else 303
        response = RedirectResponse(step.location, status, headers=NO_STORE)
    elif isinstance(step, LoginStep):
        retry = {"Retry-After": str(step.retry_after)} if step.retry_after else {}
        registration = server(request).settings.self_registration != "off"
        page = pages.login(step, root=root(request), registration=registration)
        response = HTMLResponse(page, step.status, {**_PAGE_HEADERS, **retry})
    elif isinstance(step, PatientStep):
        response = HTMLResponse(pages.patient_picker(step, root=root(request)), 200, _PAGE_HEADERS)
    elif isinstance(step, ConsentStep):
        response = HTMLResponse(pages.consent_page(step, root=root(request)), 200, _PAGE_HEADERS)
    else:
        assert isinstance(step, ErrorStep)
        response = HTMLResponse(pages.error_page(step), step.status, _PAGE_HEADERS)
    if session is not None:
        response.set_cookie(
            SESSION_COOKIE,
            session,
            max_age=PENDING_LIFETIME,
            path=root(request) + "/auth",
            secure=server(request).base.startswith("https://"),
            httponly=True,
            samesite="lax",
        )
    return response


async def _page_form(request: Request) -> list[tuple[str, str]] | Response:
    try:
        return await _form(request)
    except OAuthError as error:
        return _render(ErrorStep(error.description), request)


@router.get("/auth/authorize")
async def authorize_get(request: Request) -> Response:
    params = parse_qsl(request.url.query, keep_blank_values=True)
    return _render(await run_in_threadpool(server(request).flow.start, params), request)


@router.post("/auth/authorize")
async def authorize_post(request: Request) -> Response:
    form = await _page_form(request)
    if isinstance(form, Response):
        return form
    return _render(await run_in_threadpool(server(request).flow.start, form), request)


@router.post("/auth/login")
async def login(request: Request) -> Response:
    form = await _page_form(request)
    if isinstance(form, Response):
        return form
    values = dict(form)
    attempt = LoginAttempt(
        username=values.get("username", ""),
        password=values.get("password", ""),
        code=values.get("totp", ""),
        address=client_address(
            request.client.host if request.client else None,
            request.headers.getlist("x-forwarded-for"),
            request.app.state.trusted_proxies,
        ),
    )
    outcome: Outcome = await run_in_threadpool(
        server(request).flow.log_in, values.get("request", ""), attempt
    )
    return _render(outcome.step, request, outcome.session)


@router.post("/auth/patient")
async def choose_patient(request: Request) -> Response:
    form = await _page_form(request)
    if isinstance(form, Response):
        return form
    values = dict(form)
    patient = values.get("patient") if values.get("action") == "select" else None
    step = await run_in_threadpool(
        server(request).flow.choose_patient,
        values.get("request", ""),
        request.cookies.get(SESSION_COOKIE),
        patient,
        values.get("q", ""),
    )
    return _render(step, request)


@router.post("/auth/consent")
async def consent(request: Request) -> Response:
    form = await _page_form(request)
    if isinstance(form, Response):
        return form
    values = dict(form)
    step = await run_in_threadpool(
        server(request).flow.decide,
        values.get("request", ""),
        request.cookies.get(SESSION_COOKIE),
        values.get("decision") == "approve",
        [value for name, value in form if name == "scope"],
    )
    return _render(step, request)


# ---------------- token, introspection, revocation ----------------
async def _oauth(
    request: Request, work: Callable[[list[tuple[str, str]]], dict[str, Any] | None]
) -> Response:
    try:
        form = await _form(request)
        body = await run_in_threadpool(work, form)
    except OAuthError as error:
        return _oauth_error(error)
    return _json(body if body is not None else {})


@router.post("/auth/token")
async def token(request: Request) -> Response:
    auth = server(request)
    header = request.headers.get("authorization")

    def work(form: list[tuple[str, str]]) -> dict[str, Any]:
        values = dict(form)
        kind = "refresh" if values.get("grant_type") == "refresh_token" else "token"
        client = _client_id(values, header)
        try:
            body = auth.token_endpoint.token(form, header)
        except OAuthError:
            audit.note_event(kind, failed=True, detail=values.get("grant_type"), client=client)
            raise
        audit.note_event(kind, failed=False, detail=values.get("grant_type"), client=client)
        return body

    return await _oauth(request, work)


def _client_id(values: dict[str, str], header: str | None) -> str | None:
    """The client the request names (form or HTTP Basic), for the audit trail; None when malformed."""
    try:
        credentials = Credentials.from_request(values, header)
    except OAuthError:
        return values.get("client_id")
    return credentials.client_id or (credentials.basic[0] if credentials.basic else None)


@router.post("/auth/introspect")
async def introspect(request: Request) -> Response:
    """RFC 7662; the caller authenticates as a confidential client or with an active access token."""
    auth = server(request)
    header = request.headers.get("authorization") or ""

    def work(form: list[tuple[str, str]]) -> dict[str, Any]:
        values = dict(form)
        if header[:7].lower() == "bearer ":
            try:
                auth.bearer.principal(header[7:].strip())
            except InvalidToken:
                raise OAuthError("invalid_client", "the bearer token is not active") from None
        else:
            client = auth.authenticate_client(Credentials.from_request(values, header or None))
            if not client.confidential:
                raise OAuthError("invalid_client", "public clients cannot introspect tokens")
        if not values.get("token"):
            raise OAuthError("invalid_request", "token is required")
        return auth.introspect(values["token"])

    return await _oauth(request, work)


@router.post("/auth/revoke")
async def revoke(request: Request) -> Response:
    """RFC 7009: a client revokes one of its tokens; unknown tokens are answered with 200 too."""
    auth = server(request)
    header = request.headers.get("authorization")

    def work(form: list[tuple[str, str]]) -> None:
        values = dict(form)
        try:
            client = auth.authenticate_client(Credentials.from_request(values, header))
            if not values.get("token"):
                raise OAuthError("invalid_request", "token is required")
            auth.revoke(values["token"], client)
        except OAuthError:
            audit.note_event("revoke", failed=True, client=_client_id(values, header))
            raise
        audit.note_event("revoke", failed=False, client=client.client_id)

    return await _oauth(request, work)


router.include_router(admin_routes.router)
