"""HTTP endpoints of the self-service account pages (docs/smart-on-fhir.md "Accounts").

`GET /auth/account` and `POST /auth/account/login` (sign in with password and TOTP, throttled like
the login page), `POST /auth/account/password`, `/auth/account/totp` (start | confirm),
`/auth/account/logout`, and `GET`/`POST /auth/reset` (an operator-issued reset link,
`auth/password_reset.py`). Every POST needs the session cookie and that session's form token
(`account_forms`); the changes need a signed-in session, and act only on its own user. Each outcome
is an AuditEvent (`audit.access.note_event`).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from ..audit import access as audit
from ..auth import account, account_pages, account_session, password_reset, totp, users
from ..auth.account_session import Session
from ..auth.login import LoginAttempt, LoginRefused, log_in
from ..auth.server import AuthorizationServer
from . import account_forms as forms
from .auth_routes import root, server

router = APIRouter()
ISSUER = "fhir-server"


@router.get("/auth/account")
async def account_page(request: Request) -> Response:
    auth = server(request)
    session = await run_in_threadpool(forms.new_session, auth)
    return forms.html(request, account_pages.sign_in(session.csrf, root=root(request)), session=session)


@router.post("/auth/account/login")
async def account_login(request: Request) -> Response:
    form = await forms.submitted(request)
    return await run_in_threadpool(_sign_in, request, server(request), form, forms.address(request))


def _sign_in(
    request: Request, auth: AuthorizationServer, form: dict[str, str] | None, address: str
) -> Response:
    session = forms.session_of(auth, request, form) if form is not None else None
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
            return forms.html(
                request,
                account_pages.sign_in(session.csrf, message, root=root(request)),
                429,
                retry_after=wait,
            )
        message = "The username, password or code is not correct."
        return forms.html(request, account_pages.sign_in(session.csrf, message, root=root(request)), 401)
    audit.note_event("login", failed=False, user=user.subject, detail="account")
    signed_in = forms.new_session(auth, user.pk, old=session)
    page = account_pages.account(
        signed_in.csrf, user.username, root=root(request), totp_on=user.totp_secret is not None
    )
    return forms.html(request, page, session=signed_in)


def _expired(request: Request, auth: AuthorizationServer) -> Response:
    fresh = forms.new_session(auth)
    return forms.html(
        request, account_pages.sign_in(fresh.csrf, forms.EXPIRED, root=root(request)), 403, session=fresh
    )


Work = Callable[[Request, AuthorizationServer, Session, dict[str, str], str], Response]


async def _signed_in(request: Request, work: Work) -> Response:
    """Run `work` for a POST of a signed-in session with its form token, else the sign-in page (403)."""
    auth = server(request)
    form = await forms.submitted(request)
    address = forms.address(request)

    def run() -> Response:
        session = forms.session_of(auth, request, form) if form is not None else None
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
        session.csrf,
        user.username,
        root=root(request),
        totp_on=user.totp_secret is not None,
        notice=notice,
        error=error,
    )
    return forms.html(request, page, status, retry_after=retry_after)


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
    return forms.html(
        request,
        account_pages.totp_setup(session.csrf, session.pending_totp, uri, error, root=root(request)),
        status,
    )


def _sign_out(
    request: Request, auth: AuthorizationServer, session: Session, form: dict[str, str], address: str
) -> Response:
    with auth.store.write() as tx:
        account_session.close(tx.conn, session)
    fresh = forms.new_session(auth)
    return forms.html(request, account_pages.sign_in(fresh.csrf, None, root=root(request)), session=fresh)


@router.post("/auth/account/password")
async def account_password(request: Request) -> Response:
    return await _signed_in(request, _change_password)


@router.post("/auth/account/totp")
async def account_totp(request: Request) -> Response:
    return await _signed_in(request, _totp)


@router.post("/auth/account/logout")
async def account_logout(request: Request) -> Response:
    return await _signed_in(request, _sign_out)


@router.get(password_reset.PATH)
async def reset_page(request: Request) -> Response:
    """The page an operator's reset link opens: the new-password form, when the link is usable."""
    auth = server(request)
    token = request.query_params.get("token", "")
    address = forms.address(request)

    def run() -> Response:
        try:
            user = password_reset.check_link(auth.store, token, address=address, clock=auth.clock)
        except account.AccountRefused as refused:
            return _reset_refused(request, refused)
        session = forms.new_session(auth)
        page = account_pages.reset_form(session.csrf, token, user.username, root=root(request))
        return forms.html(request, page, session=session)

    return await run_in_threadpool(run)


@router.post(password_reset.PATH)
async def reset_submit(request: Request) -> Response:
    auth = server(request)
    form = await forms.submitted(request)
    address = forms.address(request)

    def run() -> Response:
        session = forms.session_of(auth, request, form) if form is not None else None
        if form is None or session is None:
            audit.note_event("password-reset", failed=True)
            text = "This page has expired. Please open the reset link again."
            return forms.html(request, account_pages.message("Choose a new password", text), 403)
        token = form.get("token", "")
        try:
            user = password_reset.reset(
                auth.store,
                token,
                form.get("new", ""),
                form.get("new2", ""),
                address=address,
                clock=auth.clock,
            )
        except account.AccountRefused as refused:
            if refused.status != 400:
                return _reset_refused(request, refused)
            audit.note_event("password-reset", failed=True)
            with auth.store.read() as tx:
                holder = password_reset.holder(tx.conn, token, now=int(auth.clock()))
            if holder is None:
                return _reset_refused(request, account.AccountRefused(password_reset.INVALID, 404))
            page = account_pages.reset_form(
                session.csrf, token, holder.username, root=root(request), problem=str(refused)
            )
            return forms.html(request, page, 400)
        audit.note_event("password-reset", failed=False, user=user.subject)
        with auth.store.write() as tx:
            account_session.close(tx.conn, session)
        return forms.html(request, account_pages.reset_done(root=root(request)))

    return await run_in_threadpool(run)


def _reset_refused(request: Request, refused: account.AccountRefused) -> Response:
    audit.note_event("password-reset", failed=True)
    page = account_pages.message("Choose a new password", str(refused))
    return forms.html(request, page, refused.status, retry_after=refused.retry_after)
