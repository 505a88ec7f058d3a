"""Unexpected exceptions answered with a complete 500 OperationOutcome (https://hl7.org/fhir/R4/http.html).

A pure ASGI middleware inside Starlette's ServerErrorMiddleware. That one re-raises after answering,
and uvicorn then closes a keep-alive connection without `Connection: close`, so the client's next
request on it is reset. Here the exception ends at the 500: the connection stays usable. Only
the exception types and stack frames are logged (`redacted_traceback`), never its message or the
request, which may carry patient data.
"""

from __future__ import annotations

import logging

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from ..errors import FhirError, ServerError
from ..redacted_traceback import format_exception
from . import http
from .base_path import below_base
from .http_middleware import HttpMiddleware
from .interaction import classify

log = logging.getLogger("fhir_server")


class ResponseAbandoned(RuntimeError):
    """An exception after the response had started: the server must drop the connection."""


class ServerErrors(HttpMiddleware):
    """Turn any exception escaping the app into a 500 OperationOutcome with a correct Content-Length."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            # the interaction, not the path: ids in paths are chosen by clients and may be names
            what = classify(scope["method"], below_base(scope))
            log.error(
                "Unexpected error on %s %s %s\n%s",
                scope["method"],
                what.name,
                what.res_type,
                format_exception(exc),
            )
            if started:  # half a response is out: only closing the connection can end it
                raise ResponseAbandoned("The response failed after it had started") from None
            await _outcome(Request(scope))(scope, receive, send)


def _outcome(request: Request) -> Response:
    error = ServerError("Internal server error")
    try:
        return http.render(request, error.outcome(), error.status)
    except FhirError:  # e.g. the client only accepts XML: still answer in JSON
        return Response(orjson.dumps(error.outcome()), error.status, media_type=http.FHIR_JSON)
