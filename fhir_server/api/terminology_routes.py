"""HTTP routes of the terminology operations (https://hl7.org/fhir/R4/terminology-service.html).

GET or POST (Parameters body): `ValueSet/$expand`, `ValueSet/[id]/$expand`, `ValueSet/$validate-code`,
`ValueSet/[id]/$validate-code`, `CodeSystem/$lookup`, `CodeSystem/$subsumes`. The work is done by
`fhir_server.operations` (one module per operation); included before the generic FHIR routes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from ..interactions.context import Context
from ..operations import codesystem_lookup, codesystem_subsumes, valueset_expand, valueset_validate_code
from ..operations.parameters import OperationInput, from_body, from_query
from . import http
from .deps import Ctx

router = APIRouter()
BOTH = ["GET", "POST"]


async def _input(request: Request, ctx: Context) -> OperationInput:
    query = parse_qsl(request.url.query, keep_blank_values=True)
    if request.method == "GET":
        return from_query(query)
    return from_body(await http.read_json(request, ctx.settings.max_body_bytes), query)


def _in_store(ctx: Context, work: Callable[..., Any], *args: Any) -> Any:
    with ctx.store.read() as tx:
        return work(ctx, tx, *args)


async def _answer(request: Request, ctx: Context, work: Callable[..., Any], *args: Any) -> Response:
    params = await _input(request, ctx)
    return http.render(request, await run_in_threadpool(_in_store, ctx, work, params, *args))


@router.api_route("/ValueSet/$expand", methods=BOTH)
async def expand(request: Request, ctx: Ctx) -> Response:
    return await _answer(request, ctx, valueset_expand.expand)


@router.api_route("/ValueSet/{res_id}/$expand", methods=BOTH)
async def expand_instance(res_id: str, request: Request, ctx: Ctx) -> Response:
    return await _answer(request, ctx, valueset_expand.expand, res_id)


@router.api_route("/ValueSet/$validate-code", methods=BOTH)
async def validate_code(request: Request, ctx: Ctx) -> Response:
    return await _answer(request, ctx, valueset_validate_code.validate_code)


@router.api_route("/ValueSet/{res_id}/$validate-code", methods=BOTH)
async def validate_code_instance(res_id: str, request: Request, ctx: Ctx) -> Response:
    return await _answer(request, ctx, valueset_validate_code.validate_code, res_id)


@router.api_route("/CodeSystem/$lookup", methods=BOTH)
async def lookup(request: Request, ctx: Ctx) -> Response:
    params = await _input(request, ctx)
    return http.render(request, await run_in_threadpool(codesystem_lookup.lookup, params))


@router.api_route("/CodeSystem/$subsumes", methods=BOTH)
async def subsumes(request: Request, ctx: Ctx) -> Response:
    params = await _input(request, ctx)
    return http.render(request, await run_in_threadpool(codesystem_subsumes.subsumes, params))
