"""HTTP routes of $meta, $meta-add and $meta-delete (https://hl7.org/fhir/R4/resource-operations.html#meta).

Included before the generic FHIR routes; the work is `operations/resource_meta.py`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from ..interactions.read import check_type
from ..operations import resource_meta
from . import http
from .deps import Ctx
from .operation_call import answer, operation_input

router = APIRouter()
BOTH = ["GET", "POST"]


@router.api_route("/$meta", methods=BOTH)
async def meta_system(request: Request, ctx: Ctx) -> Response:
    return await answer(request, ctx, resource_meta.summary, None)


@router.api_route("/{res_type}/$meta", methods=BOTH)
async def meta_type(res_type: str, request: Request, ctx: Ctx) -> Response:
    return await answer(request, ctx, resource_meta.summary, res_type)


@router.api_route("/{res_type}/{res_id}/$meta", methods=BOTH)
async def meta_instance(res_type: str, res_id: str, request: Request, ctx: Ctx) -> Response:
    return await answer(request, ctx, resource_meta.instance, res_type, res_id)


@router.api_route("/{res_type}/{res_id}/_history/{version}/$meta", methods=BOTH)
async def meta_version(res_type: str, res_id: str, version: str, request: Request, ctx: Ctx) -> Response:
    return await answer(request, ctx, resource_meta.instance, res_type, res_id, version)


async def _change(res_type: str, res_id: str, request: Request, ctx: Ctx, adding: bool) -> Response:
    check_type(res_type)
    params = await operation_input(request, ctx)
    version = http.if_match(request)

    def work() -> Any:
        return ctx.transact(
            lambda tx: resource_meta.change(
                ctx, tx, params, res_type, res_id, adding=adding, if_match=version
            )
        )

    result, body = await run_in_threadpool(work)
    headers = http.resource_headers(result.stored) if result is not None else None
    return http.render(request, body, 200, headers)


@router.post("/{res_type}/{res_id}/$meta-add")
async def meta_add(res_type: str, res_id: str, request: Request, ctx: Ctx) -> Response:
    return await _change(res_type, res_id, request, ctx, True)


@router.post("/{res_type}/{res_id}/$meta-delete")
async def meta_delete(res_type: str, res_id: str, request: Request, ctx: Ctx) -> Response:
    return await _change(res_type, res_id, request, ctx, False)
