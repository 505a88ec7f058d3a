"""Administration API: register clients and users, issue EHR launches (https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#register-app-with-ehr).

`/admin/clients`, `/admin/users`, `/admin/invites` (GET lists, POST creates; an invite code for
patient self-registration is shown once) and `/admin/launch` (POST issues a `launch` value for an EHR launch). The caller presents either the configured `FHIR_ADMIN_SECRET` as a
Bearer token, or an access token of a Backend Services client granted every interaction on every
type at system level (`system/*.cruds`, v1 `system/*.*`). New secrets are shown once, in the reply.
"""

from __future__ import annotations

import hmac
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ..auth import clients, invitations, totp, users
from ..auth.keys import InvalidToken
from ..auth.launch import LaunchContext
from ..auth.server import AuthorizationServer
from ..errors import Forbidden, Invalid, Unauthorized
from . import http

router = APIRouter(prefix="/admin")


def _server(request: Request) -> AuthorizationServer:
    auth: AuthorizationServer = request.app.state.auth
    return auth


def require_admin(request: Request) -> AuthorizationServer:
    """The caller is an administrator, or 401 / 403."""
    auth = _server(request)
    challenge = {"WWW-Authenticate": f'Bearer realm="{auth.base}"'}
    header = request.headers.get("authorization") or ""
    if header[:7].lower() != "bearer " or not header[7:].strip():
        raise Unauthorized("The admin API needs a Bearer token", headers=challenge)
    token = header[7:].strip()
    secret = auth.settings.admin_secret
    if secret and hmac.compare_digest(token.encode(), secret.encode()):
        return auth
    try:
        principal = auth.bearer.principal(token)
    except InvalidToken:
        raise Unauthorized(
            "The token is not valid",
            headers={"WWW-Authenticate": challenge["WWW-Authenticate"] + ', error="invalid_token"'},
        ) from None
    granted = principal.kind == "system" and all(principal.scopes.permits("system", "*", i) for i in "cruds")  # type: ignore[arg-type]
    if not granted:
        raise Forbidden("The admin API needs a system/*.cruds token")
    return auth


Admin = Annotated[AuthorizationServer, Depends(require_admin)]


async def _body(request: Request) -> dict[str, Any]:
    body = await http.read_json(request, 1_000_000, allow={"application/json", "application/fhir+json"})
    if not isinstance(body, dict):
        raise Invalid("Send a JSON object")
    return body


@router.get("/clients")
def list_clients(auth: Admin) -> JSONResponse:
    with auth.store.read() as tx:
        return JSONResponse([c.public_view() for c in clients.all_clients(tx.conn)])


@router.post("/clients")
async def add_client(request: Request, auth: Admin) -> JSONResponse:
    body = await _body(request)

    def work() -> dict[str, Any]:
        try:
            with auth.store.write() as tx:
                client, secret = clients.register(
                    tx.conn,
                    str(body.get("client_id", "")),
                    str(body.get("type", "")),
                    redirect_uris=[str(u) for u in body.get("redirect_uris") or []],
                    jwks=body.get("jwks"),
                    jwks_uri=body.get("jwks_uri"),
                    scope=str(body.get("scope", "")),
                    name=str(body.get("name", "")),
                )
        except clients.RegistrationError as error:
            raise Invalid(str(error)) from None
        out = client.public_view()
        if secret is not None:
            out["client_secret"] = secret
        return out

    return JSONResponse(await run_in_threadpool(work), 201, {"Cache-Control": "no-store"})


@router.get("/users")
def list_users(auth: Admin) -> JSONResponse:
    with auth.store.read() as tx:
        return JSONResponse([u.public_view() for u in users.all_users(tx.conn)])


@router.post("/users")
async def add_user(request: Request, auth: Admin) -> JSONResponse:
    body = await _body(request)

    def work() -> dict[str, Any]:
        try:
            with auth.store.write() as tx:
                user, secret = users.add(
                    tx.conn,
                    str(body.get("username", "")),
                    str(body.get("password", "")),
                    fhir_user=body.get("fhirUser"),
                    with_totp=bool(body.get("totp")),
                )
        except users.UserError as error:
            raise Invalid(str(error)) from None
        out = user.public_view()
        if secret is not None:
            out["totp_secret"] = secret
            out["totp_uri"] = totp.provisioning_uri(secret, user.username, "fhir-server")
        return out

    return JSONResponse(await run_in_threadpool(work), 201, {"Cache-Control": "no-store"})


@router.get("/invites")
def list_invites(auth: Admin) -> JSONResponse:
    with auth.store.read() as tx:
        invites = invitations.all_invites(tx.conn)
    now = int(time.time())
    return JSONResponse([i.public_view(now) for i in invites], headers={"Cache-Control": "no-store"})


@router.post("/invites")
async def add_invite(request: Request, auth: Admin) -> JSONResponse:
    """A registration invite code (body `{"days": 7}`, the default), shown only in this reply."""
    body = await _body(request)
    days = body.get("days", 7)
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= invitations.MAX_DAYS:
        raise Invalid(f"days must be a whole number from 1 to {invitations.MAX_DAYS}", "days")

    def work() -> dict[str, Any]:
        with auth.store.write() as tx:
            code, expires = invitations.create(tx.conn, days=days, now=int(time.time()))
        return {"code": code, "expires": expires, "registration": auth.settings.self_registration}

    return JSONResponse(await run_in_threadpool(work), 201, {"Cache-Control": "no-store"})


@router.post("/launch")
async def add_launch(request: Request, auth: Admin) -> JSONResponse:
    body = await _body(request)
    try:
        context = LaunchContext(
            patient=body.get("patient"),
            encounter=body.get("encounter"),
            fhir_context=tuple(body.get("fhirContext") or ()),
            intent=body.get("intent"),
            need_patient_banner=bool(body.get("need_patient_banner", True)),
        )
    except (ValueError, TypeError) as error:
        raise Invalid(str(error)) from None
    value = await run_in_threadpool(auth.issue_launch, context)
    return JSONResponse({"launch": value, "iss": auth.base}, 201, {"Cache-Control": "no-store"})
