"""The FHIR RESTful API: a table of (method, path) -> interaction (https://hl7.org/fhir/R4/http.html).

Handlers only translate HTTP to plain values and back; the work is done by `interactions`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match

from .. import instant
from ..errors import Invalid, MethodNotAllowed, NotFound
from ..interactions import create, delete, history, patch, read, search, transaction, update, vread
from ..interactions.context import Context
from ..interactions.write import WriteResult
from ..model import is_resource_type
from ..operations import definitions
from . import http, metadata
from .deps import Ctx, PublicCtx

router = APIRouter()


def _params(request: Request) -> list[tuple[str, str]]:
    return parse_qsl(request.url.query, keep_blank_values=True)


def _criteria(request: Request) -> str:
    params = [(k, v) for k, v in _params(request) if k not in ("_format", "_pretty")]
    if not params:
        raise Invalid("A conditional request needs search criteria in the URL", "url")
    return urlencode(params)


def _write_response(request: Request, ctx: Context, result: WriteResult) -> Response:
    stored = result.stored
    headers = http.resource_headers(stored)
    if result.status == 201:
        headers["Location"] = (
            f"{ctx.settings.base}/{stored.res_type}/{stored.res_id}/_history/{stored.version}"
        )
    prefer = http.prefer_return(request)
    if prefer == "minimal":
        return Response(status_code=result.status, headers=headers)
    if prefer == "OperationOutcome":
        from ..errors import Issue, operation_outcome

        verb = "Created" if result.created else ("Matched existing" if result.status == 200 else "Updated")
        body = operation_outcome([Issue(f"{verb} {stored.res_type}/{stored.res_id}", severity="information")])
        return http.render(request, body, result.status, headers)
    return http.render(request, stored.content, result.status, headers)


async def _in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await run_in_threadpool(fn, *args, **kwargs)


# ---------------- capabilities ----------------
@router.get("/metadata")
async def capabilities(request: Request, ctx: PublicCtx) -> Response:
    mode = request.query_params.get("mode", "full")
    return http.render(request, metadata.capability_statement(ctx.settings, mode))


def _operation_definition(name: str) -> Callable[[Request, PublicCtx], Any]:
    async def read_definition(request: Request, ctx: PublicCtx) -> Response:
        return http.render(request, definitions.definition(name, ctx.settings.base))

    return read_definition


for _name in definitions.NAMES:  # this server's own operations, before the generic read route
    router.add_api_route(f"/OperationDefinition/{_name}", _operation_definition(_name), methods=["GET"])


# ---------------- unknown operations ----------------
# Every operation this server has is routed before this router (app.py); any other `$name` in an
# operation's place is unknown: 404 for every method (a known operation's path with a method it
# does not take stays 405), never a write to an id starting with '$' (ids cannot hold one).
_ANY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def _all_routes(routes: list[Any]) -> Iterator[Any]:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI wraps included routers
        yield from _all_routes(included.routes) if included is not None else (route,)


async def _unknown_operation(request: Request) -> Response:
    for route in _all_routes(request.app.router.routes):
        if not isinstance(route, APIRoute) or route.endpoint is _unknown_operation or "$" not in route.path:
            continue  # only the operations' own routes
        if route.matches(request.scope)[0] == Match.PARTIAL:
            raise method_not_allowed(request.method, request.url.path)
    raise NotFound(f"Unknown operation '{request.url.path.rsplit('/', 1)[1]}'", "url")


for _path in ("/${operation}", "/{res_type}/${operation}", "/{res_type}/{res_id}/${operation}"):
    router.add_api_route(_path, _unknown_operation, methods=_ANY_METHOD, include_in_schema=False)


# ---------------- whole system ----------------
@router.post("/")
async def system_bundle(request: Request, ctx: Ctx) -> Response:
    body = await http.read_json(request, ctx.settings.max_body_bytes)
    kind = body.get("type") if isinstance(body, dict) else None
    if kind == "batch":
        return http.render(request, await _in_thread(transaction.batch, ctx, body))
    if kind == "transaction":
        return http.render(request, await _in_thread(transaction.transaction, ctx, body))
    raise Invalid("POST to the base needs a Bundle of type batch or transaction", "Bundle.type")


@router.get("/")
async def system_search(request: Request, ctx: Ctx) -> Response:
    return http.render(request, await _in_thread(_search, ctx, None, _params(request), request))


@router.get("/_history")
async def system_history(request: Request, ctx: Ctx) -> Response:
    return http.render(request, await _in_thread(_history, ctx, _params(request), None, None))


# ---------------- type level ----------------
@router.get("/{res_type}")
async def search_type(res_type: str, request: Request, ctx: Ctx) -> Response:
    read.check_type(res_type)
    return http.render(request, await _in_thread(_search, ctx, res_type, _params(request), request))


@router.post("/{res_type}/_search")
async def search_post(res_type: str, request: Request, ctx: Ctx) -> Response:
    read.check_type(res_type)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype != "application/x-www-form-urlencoded":
        from ..errors import UnsupportedMediaType

        raise UnsupportedMediaType("POST _search takes an application/x-www-form-urlencoded body")
    form = parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    params = _params(request) + form
    return http.render(request, await _in_thread(_search, ctx, res_type, params, request))


@router.post("/{res_type}")
async def create_type(res_type: str, request: Request, ctx: Ctx) -> Response:
    read.check_type(res_type)
    body = await http.read_json(request, ctx.settings.max_body_bytes)
    criteria = request.headers.get("if-none-exist")

    def work() -> WriteResult:
        return ctx.transact(lambda tx: create.create(ctx, tx, res_type, body, if_none_exist=criteria))

    return _write_response(request, ctx, await _in_thread(work))


@router.put("/{res_type}")
async def conditional_update(res_type: str, request: Request, ctx: Ctx) -> Response:
    read.check_type(res_type)
    criteria = _criteria(request)
    body = await http.read_json(request, ctx.settings.max_body_bytes)
    version = http.if_match(request)

    def work() -> WriteResult:
        return ctx.transact(
            lambda tx: update.conditional_update(ctx, tx, res_type, criteria, body, if_match=version)
        )

    return _write_response(request, ctx, await _in_thread(work))


@router.delete("/{res_type}")
async def conditional_delete(res_type: str, request: Request, ctx: Ctx) -> Response:
    read.check_type(res_type)
    criteria = _criteria(request)

    def work() -> Any:
        return ctx.transact(lambda tx: delete.conditional_delete(ctx, tx, res_type, criteria))

    gone = await _in_thread(work)
    return Response(status_code=204, headers={"ETag": gone.etag} if gone else None)


@router.get("/{res_type}/_history")
async def type_history(res_type: str, request: Request, ctx: Ctx) -> Response:
    read.check_type(res_type)
    return http.render(request, await _in_thread(_history, ctx, _params(request), res_type, None))


# ---------------- instance level ----------------
@router.get("/{res_type}/{res_id}")
async def read_instance(res_type: str, res_id: str, request: Request, ctx: Ctx) -> Response:
    if res_id.startswith("$"):
        raise NotFound(f"Unknown operation '{res_id}' on {res_type}")

    def work() -> Any:
        with ctx.store.read() as tx:
            return read.read(tx, res_type, res_id, principal=ctx.principal)

    stored = await _in_thread(work)
    headers = http.resource_headers(stored)
    if http.not_modified(request, stored):
        return Response(status_code=304, headers=headers)
    q = request.query_params
    body = http.subset(stored, q.get("_summary"), q.get("_elements"))
    return http.render(request, body, 200, headers)


@router.put("/{res_type}/{res_id}")
async def update_instance(res_type: str, res_id: str, request: Request, ctx: Ctx) -> Response:
    read.check_type(res_type)
    body = await http.read_json(request, ctx.settings.max_body_bytes)
    version = http.if_match(request)

    def work() -> WriteResult:
        return ctx.transact(lambda tx: update.update(ctx, tx, res_type, res_id, body, if_match=version))

    return _write_response(request, ctx, await _in_thread(work))


@router.patch("/{res_type}")
async def conditional_patch(res_type: str, request: Request, ctx: Ctx) -> Response:
    read.check_type(res_type)
    criteria = _criteria(request)
    ops = await http.read_json(request, ctx.settings.max_body_bytes, allow=http.PATCH_BODY_TYPES)
    version = http.if_match(request)

    def work() -> WriteResult:
        return ctx.transact(
            lambda tx: patch.conditional_patch(ctx, tx, res_type, criteria, ops, if_match=version)
        )

    return _write_response(request, ctx, await _in_thread(work))


@router.patch("/{res_type}/{res_id}")
async def patch_instance(res_type: str, res_id: str, request: Request, ctx: Ctx) -> Response:
    read.check_type(res_type)
    ops = await http.read_json(request, ctx.settings.max_body_bytes, allow=http.PATCH_BODY_TYPES)
    version = http.if_match(request)

    def work() -> WriteResult:
        return ctx.transact(lambda tx: patch.patch(ctx, tx, res_type, res_id, ops, if_match=version))

    return _write_response(request, ctx, await _in_thread(work))


@router.delete("/{res_type}/{res_id}")
async def delete_instance(res_type: str, res_id: str, request: Request, ctx: Ctx) -> Response:
    read.check_type(res_type)

    def work() -> Any:
        return ctx.transact(lambda tx: delete.delete(tx, res_type, res_id, principal=ctx.principal))

    gone = await _in_thread(work)
    return Response(status_code=204, headers={"ETag": gone.etag} if gone else None)


@router.get("/{res_type}/{res_id}/_history")
async def instance_history(res_type: str, res_id: str, request: Request, ctx: Ctx) -> Response:
    read.check_type(res_type)
    return http.render(request, await _in_thread(_history, ctx, _params(request), res_type, res_id))


@router.get("/{res_type}/{res_id}/_history/{version_id}")
async def vread_instance(res_type: str, res_id: str, version_id: str, request: Request, ctx: Ctx) -> Response:
    def work() -> Any:
        with ctx.store.read() as tx:
            return vread.vread(tx, res_type, res_id, version_id, principal=ctx.principal)

    stored = await _in_thread(work)
    headers = http.resource_headers(stored)
    if http.not_modified(request, stored):
        return Response(status_code=304, headers=headers)
    return http.render(request, stored.content, 200, headers)


@router.get("/{res_type}/{res_id}/{target}")
async def compartment_search(res_type: str, res_id: str, target: str, request: Request, ctx: Ctx) -> Response:
    read.check_type(res_type)
    if target != "*" and not is_resource_type(target):
        raise NotFound(f"Unknown path '{res_type}/{res_id}/{target}'")
    compartment = (res_type, res_id)
    body = await _in_thread(
        _search, ctx, None if target == "*" else target, _params(request), request, compartment
    )
    return http.render(request, body)


def _search(
    ctx: Context,
    res_type: str | None,
    params: list[tuple[str, str]],
    request: Request,
    compartment: tuple[str, str] | None = None,
) -> Any:
    with ctx.store.read() as tx:
        return search.search(
            ctx, tx, res_type, params, lenient=http.prefer_lenient(request), compartment=compartment
        )


def _history(ctx: Context, params: list[tuple[str, str]], res_type: str | None, res_id: str | None) -> Any:
    with ctx.store.read() as tx:
        return history.history(ctx, tx, params, res_type, res_id)


def method_not_allowed(method: str, path: str) -> MethodNotAllowed:
    return MethodNotAllowed(f"{method} is not allowed on {path}")


__all__ = ["instant", "method_not_allowed", "router"]
