"""Calling an operation over HTTP (https://hl7.org/fhir/R4/operations.html#executing): GET or POST.

A GET's query, or a POST's Parameters body (with the query), becomes the `OperationInput`; the work
runs in the threadpool inside one read transaction and its answer is rendered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from ..interactions.context import Context
from ..operations.parameters import OperationInput, from_body, from_query
from . import http


async def operation_input(request: Request, ctx: Context) -> OperationInput:
    """The operation's input parameters: the query of a GET, the Parameters body of a POST."""
    query = parse_qsl(request.url.query, keep_blank_values=True)
    if request.method == "GET":
        return from_query(query)
    return from_body(await http.read_json(request, ctx.settings.max_body_bytes), query)


def _in_store(ctx: Context, work: Callable[..., Any], *args: Any) -> Any:
    with ctx.store.read() as tx:
        return work(ctx, tx, *args)


async def answer(request: Request, ctx: Context, work: Callable[..., Any], *args: Any) -> Response:
    """`work(ctx, tx, input, *args)` in a read transaction, rendered."""
    params = await operation_input(request, ctx)
    return http.render(request, await run_in_threadpool(_in_store, ctx, work, params, *args))
