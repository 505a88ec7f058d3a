"""HTTP routes of the clinical operations: Patient/$everything (https://hl7.org/fhir/R4/patient-operation-everything.html),
Observation/$lastn and Observation/$stats (https://hl7.org/fhir/R4/observation-operations.html).

GET or POST (Parameters body); the work is done by `fhir_server.operations` (one module per
operation) inside one read transaction. Included before the generic FHIR routes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from ..interactions.context import Context
from ..operations import observation_lastn, observation_stats, patient_everything
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


async def _answer(request: Request, ctx: Ctx, work: Callable[..., Any], *args: Any) -> Response:
    params = await _input(request, ctx)
    return http.render(request, await run_in_threadpool(_in_store, ctx, work, params, *args))


@router.api_route("/Patient/$everything", methods=BOTH)
async def everything_type(request: Request, ctx: Ctx) -> Response:
    return await _answer(request, ctx, patient_everything.everything_bundle, None)


@router.api_route("/Patient/{res_id}/$everything", methods=BOTH)
async def everything_instance(res_id: str, request: Request, ctx: Ctx) -> Response:
    return await _answer(request, ctx, patient_everything.everything_bundle, res_id)


@router.api_route("/Observation/$lastn", methods=BOTH)
async def lastn(request: Request, ctx: Ctx) -> Response:
    return await _answer(request, ctx, observation_lastn.lastn)


@router.api_route("/Observation/$stats", methods=BOTH)
async def stats(request: Request, ctx: Ctx) -> Response:
    return await _answer(request, ctx, observation_stats.stats)
