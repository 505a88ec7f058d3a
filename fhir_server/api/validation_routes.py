"""HTTP routes of $validate (https://hl7.org/fhir/R4/resource-operation-validate.html): GET or POST on
`[type]/$validate` and `[type]/[id]/$validate`. A POST body is a Parameters resource or the resource
itself. The work is `fhir_server/operations/resource_validate.py`; included before the generic routes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from ..interactions.context import Context
from ..operations import resource_validate
from ..operations.parameters import OperationInput, from_body, from_query
from . import http
from .deps import Ctx

router = APIRouter()


async def _answer(request: Request, ctx: Context, res_type: str, res_id: str | None) -> Response:
    query = parse_qsl(request.url.query, keep_blank_values=True)
    body: Any = None
    params: OperationInput
    if request.method == "GET":
        params = from_query(query)
    else:
        body = await http.read_json(request, ctx.settings.max_body_bytes)
        if isinstance(body, dict) and body.get("resourceType") == "Parameters" and res_type != "Parameters":
            params, body = from_body(body, query), None
        else:
            params = from_query(query)

    def work() -> dict[str, Any]:
        with ctx.store.read() as tx:
            return resource_validate.validate(ctx, tx, params, res_type, res_id, body)

    return http.render(request, await run_in_threadpool(work))


@router.api_route("/{res_type}/$validate", methods=["GET", "POST"])
async def validate_type(request: Request, ctx: Ctx, res_type: str) -> Response:
    return await _answer(request, ctx, res_type, None)


@router.api_route("/{res_type}/{res_id}/$validate", methods=["GET", "POST"])
async def validate_instance(request: Request, ctx: Ctx, res_type: str, res_id: str) -> Response:
    return await _answer(request, ctx, res_type, res_id)
