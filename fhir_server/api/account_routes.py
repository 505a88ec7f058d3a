"""HTTP endpoints of the self-service account pages (docs/smart-on-fhir.md "Accounts").

`GET`/`POST /auth/register` (patient self-registration, when the operator allows it), `GET /auth/account`
and `POST /auth/account/login` (sign in with password and TOTP, throttled like the login page),
`POST /auth/account/password`, `/auth/account/totp` (start | confirm) and `/auth/account/logout`.
Every POST needs the session cookie and that session's form token; the changes need a signed-in
session, and act only on its own user. Each outcome is an AuditEvent (`audit.access.note_event`).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from ..audit import access as audit
from ..auth import account, account_pages, account_session, registration_form, totp, users
from ..auth.account_session import Session
from ..auth.login import LoginAttempt, LoginRefused, log_in
from ..auth.oauth_error import OAuthError
from ..auth.server import AuthorizationServer
from ..operations.patient_registration import RegistrationRefused, register
from .auth_routes import _PAGE_HEADERS, _form, server
from .client_address import client_address

router = APIRouter()
COOKIE = "fhir_account_session"
EXPIRED = "This page has expired. Please try again."
ISSUER = "fhir-server"


def _html(
    request: Request, page: str, status: int = 200, *, session: Session | None = None, retry_after: int = 0
) -> Response:
    headers = {**_PAGE_HEADERS, **({"Retry-After": str(retry_after)} if retry_after else {})}
    response = HTMLResponse(page, status, headers)
    if session is not None:
        response.set_cookie(
            COOKIE,
            session.cookie,
            max_age=account_session.LIFETIME,
            path="/auth",
            secure=server(request).base.startswith("https://"),
            httponly=True,
            samesite="strict",
        )
    return response


def _address(request: Request) -> str:
    return client_address(
        request.client.host if request.client else None,
        request.headers.getlist("x-forwarded-for"),
        request.app.state.trusted_proxies,
    )


async def _submitted(request: Request) -> dict[str, str] | None:
    """The posted form (the first value of each field), or None when it is not a readable form."""
    try:
        return dict(reversed(await _form(request)))
    except OAuthError:  # not urlencoded, too large, not UTF-8
        return None


def _session(auth: AuthorizationServer, request: Request, form: Mapping[str, str]) -> Session | None:
    with auth.store.read() as tx:
        return account_session.find(
            tx.conn, request.cookies.get(COOKIE), form.get("csrf"), now=int(auth.clock())
        )


def _new_session(
    auth: AuthorizationServer, user_pk: int | None = None, old: Session | None = None
) -> Session:
    with auth.store.write() as tx:
        if old is not None:
            account_session.close(tx.conn, old)
        return account_session.open_session(tx.conn, now=int(auth.clock()), user_pk=user_pk)


# ---------------- registration ----------------
def _registration_open(auth: AuthorizationServer) -> bool:
    return auth.settings.self_registration in ("open", "invite")


def _closed(request: Request) -> Response:
    return _html(
        request, account_pages.message("Registration", "Registration is not open on this server."), 404
    )


@router.get("/auth/register")
async def register_page(request: Request) -> Response:
    auth = server(request)
    if not _registration_open(auth):
        return _closed(request)
    session = await run_in_threadpool(_new_session, auth)
    invite = auth.settings.self_registration == "invite"
    return _html(request, account_pages.register(session.csrf, invite=invite), session=session)


@router.post("/auth/register")
async def register_submit(request: Request) -> Response:
    auth = server(request)
    if not _registration_open(auth):
        return _closed(request)
    form = await _submitted(request)
    return await run_in_threadpool(_register, request, auth, form, _address(request))


def _register(
    request: Request, auth: AuthorizationServer, form: dict[str, str] | None, address: str
) -> Response:
    invite = auth.settings.self_registration == "invite"
    session = _session(auth, request, form) if form is not None else None
    if form is None or session is None:
        fresh = _new_session(auth)
        return _html(
            request, account_pages.register(fresh.csrf, invite=invite, error=EXPIRED), 403, session=fresh
        )
    values = {k: form.get(k, "") for k in ("invite", "given", "family", "birthdate", "username")}

    def again(
        status: int, problems: Mapping[str, str] | None = None, error: str | None = None, wait: int = 0
    ) -> Response:
        audit.note_event("register", failed=True, detail=auth.settings.self_registration)
        page = account_pages.register(
            session.csrf, invite=invite, values=values, problems=problems, error=error
        )
        return _html(request, page, status, retry_after=wait)

    try:
        today = datetime.datetime.fromtimestamp(auth.clock(), datetime.UTC).date()
        registration = registration_form.parse(form, today=today, need_invite=invite)
        done = register(auth.store, auth.settings, registration, address=address, clock=auth.clock)
    except registration_form.FormProblems as problems:
        return again(400, problems.problems)
    except RegistrationRefused as refused:
        if refused.status == 404:
            return _closed(request)
        if refused.field:
            return again(refused.status, {refused.field: str(refused)})
        return again(refused.status, error=str(refused), wait=refused.retry_after)
    audit.note_event("register", failed=False, user=done.user.subject, detail=auth.settings.self_registration)
    with auth.store.write() as tx:
        account_session.close(tx.conn, session)
    return _html(request, account_pages.registered(done.user.username), 201)


# ---------------- account: sign in, password, TOTP ----------------
@router.get("/auth/account")
async def account_page(request: Request) -> Response:
    auth = server(request)
    session = await run_in_threadpool(_new_session, auth)
    return _html(request, account_pages.sign_in(session.csrf), session=session)


@router.post("/auth/account/login")
async def account_login(request: Request) -> Response:
    form = await _submitted(request)
    return await run_in_threadpool(_sign_in, request, server(request), form, _address(request))


def _sign_in(
    request: Request, auth: AuthorizationServer, form: dict[str, str] | None, address: str
) -> Response:
    session = _session(auth, request, form) if form is not None else None
    if form is None or session is None:
        return _expired(request, auth)
    attempt = LoginAttempt(form.get("username", ""), form.get("password", ""), form.get("totp", ""), address)
    try:
        user = log_in(auth.store, attempt, clock=auth.clock)
    except LoginRefused as refused:
        audit.note_event("login", failed=True, detail="account")
        if refused.throttled:
            wait = refused.retry_after
            message = (
                f"Too many failed sign-in attempts. Please try again in {wait} second{'s' * (wait != 1)}."
            )
            return _html(request, account_pages.sign_in(session.csrf, message), 429, retry_after=wait)
        message = "The username, password or code is not correct."
        return _html(request, account_pages.sign_in(session.csrf, message), 401)
    audit.note_event("login", failed=False, user=user.subject, detail="account")
    signed_in = _new_session(auth, user.pk, old=session)
    page = account_pages.account(signed_in.csrf, user.username, totp_on=user.totp_secret is not None)
    return _html(request, page, session=signed_in)


def _expired(request: Request, auth: AuthorizationServer) -> Response:
    fresh = _new_session(auth)
    return _html(request, account_pages.sign_in(fresh.csrf, EXPIRED), 403, session=fresh)


Work = Callable[[Request, AuthorizationServer, Session, dict[str, str], str], Response]


async def _signed_in(request: Request, work: Work) -> Response:
    """Run `work` for a POST of a signed-in session with its form token, else the sign-in page (403)."""
    auth = server(request)
    form = await _submitted(request)
    address = _address(request)

    def run() -> Response:
        session = _session(auth, request, form) if form is not None else None
        if form is None or session is None or session.user_pk is None:
            return _expired(request, auth)
        return work(request, auth, session, form, address)

    return await run_in_threadpool(run)


def _account(
    request: Request,
    auth: AuthorizationServer,
    session: Session,
    status: int = 200,
    *,
    notice: str | None = None,
    error: str | None = None,
    retry_after: int = 0,
) -> Response:
    assert session.user_pk is not None
    with auth.store.read() as tx:
        user = users.get(tx.conn, session.user_pk)
    if user is None:
        return _expired(request, auth)
    page = account_pages.account(
        session.csrf, user.username, totp_on=user.totp_secret is not None, notice=notice, error=error
    )
    return _html(request, page, status, retry_after=retry_after)


def _change_password(
    request: Request, auth: AuthorizationServer, session: Session, form: dict[str, str], address: str
) -> Response:
    subject = f"user-{session.user_pk}"
    try:
        account.change_password(
            auth.store,
            session,
            form.get("current", ""),
            form.get("new", ""),
            form.get("new2", ""),
            address=address,
            clock=auth.clock,
        )
    except account.AccountRefused as refused:
        audit.note_event("password-change", failed=True, user=subject)
        return _account(
            request, auth, session, refused.status, error=str(refused), retry_after=refused.retry_after
        )
    audit.note_event("password-change", failed=False, user=subject)
    notice = "Your password was changed. Apps you had signed in to will ask you to sign in again."
    return _account(request, auth, session, notice=notice)


def _totp(
    request: Request, auth: AuthorizationServer, session: Session, form: dict[str, str], address: str
) -> Response:
    subject = f"user-{session.user_pk}"
    if form.get("action") != "confirm":
        session = account.start_totp(auth.store, session)
        return _setup(request, auth, session)
    try:
        account.confirm_totp(auth.store, session, form.get("code", ""), clock=auth.clock)
    except account.AccountRefused as refused:
        audit.note_event("totp-enrol", failed=True, user=subject)
        if session.pending_totp is None:
            return _account(request, auth, session, refused.status, error=str(refused))
        return _setup(request, auth, session, str(refused), refused.status)
    audit.note_event("totp-enrol", failed=False, user=subject)
    return _account(
        request, auth, session, notice="Two-step sign-in is on. Apps will ask for a code at sign-in."
    )


def _setup(
    request: Request, auth: AuthorizationServer, session: Session, error: str | None = None, status: int = 200
) -> Response:
    assert session.user_pk is not None and session.pending_totp is not None
    with auth.store.read() as tx:
        user = users.get(tx.conn, session.user_pk)
    if user is None:
        return _expired(request, auth)
    uri = totp.provisioning_uri(session.pending_totp, user.username, ISSUER)
    return _html(request, account_pages.totp_setup(session.csrf, session.pending_totp, uri, error), status)


def _sign_out(
    request: Request, auth: AuthorizationServer, session: Session, form: dict[str, str], address: str
) -> Response:
    with auth.store.write() as tx:
        account_session.close(tx.conn, session)
    fresh = _new_session(auth)
    return _html(request, account_pages.sign_in(fresh.csrf, None), session=fresh)


@router.post("/auth/account/password")
async def account_password(request: Request) -> Response:
    return await _signed_in(request, _change_password)


@router.post("/auth/account/totp")
async def account_totp(request: Request) -> Response:
    return await _signed_in(request, _totp)


@router.post("/auth/account/logout")
async def account_logout(request: Request) -> Response:
    return await _signed_in(request, _sign_out)
