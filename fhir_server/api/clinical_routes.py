"""HTTP routes of the clinical operations: Patient/$everything (https://hl7.org/fhir/R4/patient-operation-everything.html),
Observation/$lastn and Observation/$stats (https://hl7.org/fhir/R4/observation-operations.html).

GET or POST (Parameters body); the work is done by `fhir_server.operations` (one module per
operation) inside one read transaction. Included before the generic FHIR routes.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from ..operations import observation_lastn, observation_stats, patient_everything
from .deps import Ctx
from .operation_call import answer

router = APIRouter()
BOTH = ["GET", "POST"]


@router.api_route("/Patient/$everything", methods=BOTH)
async def everything_type(request: Request, ctx: Ctx) -> Response:
    return await answer(request, ctx, patient_everything.everything_bundle, None)


@router.api_route("/Patient/{res_id}/$everything", methods=BOTH)
async def everything_instance(res_id: str, request: Request, ctx: Ctx) -> Response:
    return await answer(request, ctx, patient_everything.everything_bundle, res_id)


@router.api_route("/Observation/$lastn", methods=BOTH)
async def lastn(request: Request, ctx: Ctx) -> Response:
    return await answer(request, ctx, observation_lastn.lastn)


@router.api_route("/Observation/$stats", methods=BOTH)
async def stats(request: Request, ctx: Ctx) -> Response:
    return await answer(request, ctx, observation_stats.stats)
