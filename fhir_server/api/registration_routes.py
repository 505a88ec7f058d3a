"""Patient self-registration pages: `GET`/`POST /auth/register` (docs/smart-on-fhir.md "Accounts").

404 unless `FHIR_SELF_REGISTRATION` is `open` or `invite`. The form needs its session cookie and
form token (`account_forms`); the form is read by `auth/registration_form.py`, the account and its
Patient made by `operations/patient_registration.py`. Each submission is an AuditEvent (register).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from ..audit import access as audit
from ..auth import account_pages, account_session, registration_form
from ..auth.server import AuthorizationServer
from ..operations.patient_registration import RegistrationRefused, register
from . import account_forms as forms
from .auth_routes import root, server

router = APIRouter()


def _registration_open(auth: AuthorizationServer) -> bool:
    return auth.settings.self_registration in ("open", "invite")


def _closed(request: Request) -> Response:
    return forms.html(
        request, account_pages.message("Registration", "Registration is not open on this server."), 404
    )


@router.get("/auth/register")
async def register_page(request: Request) -> Response:
    auth = server(request)
    if not _registration_open(auth):
        return _closed(request)
    session = await run_in_threadpool(forms.new_session, auth)
    invite = auth.settings.self_registration == "invite"
    return forms.html(
        request, account_pages.register(session.csrf, root=root(request), invite=invite), session=session
    )


@router.post("/auth/register")
async def register_submit(request: Request) -> Response:
    auth = server(request)
    if not _registration_open(auth):
        return _closed(request)
    form = await forms.submitted(request)
    return await run_in_threadpool(_register, request, auth, form, forms.address(request))


def _register(
    request: Request, auth: AuthorizationServer, form: dict[str, str] | None, address: str
) -> Response:
    invite = auth.settings.self_registration == "invite"
    session = forms.session_of(auth, request, form) if form is not None else None
    if form is None or session is None:
        fresh = forms.new_session(auth)
        return forms.html(
            request,
            account_pages.register(fresh.csrf, root=root(request), invite=invite, error=forms.EXPIRED),
            403,
            session=fresh,
        )
    values = {k: form.get(k, "") for k in ("invite", "given", "family", "birthdate", "username")}

    def again(
        status: int, problems: Mapping[str, str] | None = None, error: str | None = None, wait: int = 0
    ) -> Response:
        audit.note_event("register", failed=True, detail=auth.settings.self_registration)
        page = account_pages.register(
            session.csrf, root=root(request), invite=invite, values=values, problems=problems, error=error
        )
        return forms.html(request, page, status, retry_after=wait)

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
    return forms.html(request, account_pages.registered(done.user.username, root=root(request)), 201)
