"""HTTP routes of the terminology operations (https://hl7.org/fhir/R4/terminology-service.html).

GET or POST (Parameters body): `ValueSet/$expand`, `ValueSet/[id]/$expand`, `ValueSet/$validate-code`,
`ValueSet/[id]/$validate-code`, `CodeSystem/$lookup`, `CodeSystem/$subsumes`. The work is done by
`fhir_server.operations` (one module per operation); included before the generic FHIR routes.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from ..operations import codesystem_lookup, codesystem_subsumes, valueset_expand, valueset_validate_code
from . import http
from .deps import Ctx
from .operation_call import answer, operation_input

router = APIRouter()
BOTH = ["GET", "POST"]


@router.api_route("/ValueSet/$expand", methods=BOTH)
async def expand(request: Request, ctx: Ctx) -> Response:
    return await answer(request, ctx, valueset_expand.expand)


@router.api_route("/ValueSet/{res_id}/$expand", methods=BOTH)
async def expand_instance(res_id: str, request: Request, ctx: Ctx) -> Response:
    return await answer(request, ctx, valueset_expand.expand, res_id)


@router.api_route("/ValueSet/$validate-code", methods=BOTH)
async def validate_code(request: Request, ctx: Ctx) -> Response:
    return await answer(request, ctx, valueset_validate_code.validate_code)


@router.api_route("/ValueSet/{res_id}/$validate-code", methods=BOTH)
async def validate_code_instance(res_id: str, request: Request, ctx: Ctx) -> Response:
    return await answer(request, ctx, valueset_validate_code.validate_code, res_id)


@router.api_route("/CodeSystem/$lookup", methods=BOTH)
async def lookup(request: Request, ctx: Ctx) -> Response:
    params = await operation_input(request, ctx)
    return http.render(request, await run_in_threadpool(codesystem_lookup.lookup, params))


@router.api_route("/CodeSystem/$subsumes", methods=BOTH)
async def subsumes(request: Request, ctx: Ctx) -> Response:
    params = await operation_input(request, ctx)
    return http.render(request, await run_in_threadpool(codesystem_subsumes.subsumes, params))
