"""Each request measured once: its id, its metrics and one structured log line (docs/operations.md).

The request id is the client's `X-Request-ID` when it is a short token of safe characters, else a new
one; it is echoed in the response header, set in `structured_logs.request_id` for every record logged
while the request runs, and written with the request's line. That line and the metrics carry the same
labels (interaction, resource type, status) and the client id of the access token, never the path,
query or body, which may hold patient data (docs/logging.md).
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import Message, Receive, Scope, Send

from ..structured_logs import request_fields, request_id
from .base_path import below_base
from .http_middleware import HttpMiddleware
from .interaction import classify
from .metrics import Metrics

log = logging.getLogger("fhir_server.access")
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_QUIET = {"health", "metrics"}  # probes and scrapes: counted, not logged (they come every few seconds)


def _incoming_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _SAFE_ID.fullmatch(candidate):
                return candidate
    return uuid.uuid4().hex


class RequestTelemetry(HttpMiddleware):
    """Outermost but for the base path: times the whole response, errors included."""

    def __init__(self, app: object, metrics: Metrics) -> None:
        super().__init__(app)  # type: ignore[arg-type]
        self.metrics = metrics

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid = _incoming_id(scope)
        token = request_id.set(rid)
        fields: dict[str, object] = {}
        fields_token = request_fields.set(fields)
        interaction = classify(scope["method"], below_base(scope))
        status = 500
        started = time.perf_counter()

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)["X-Request-ID"] = rid
            await send(message)

        self.metrics.in_progress.inc()
        try:
            await self.app(scope, receive, observed_send)
        finally:
            seconds = time.perf_counter() - started
            self.metrics.in_progress.dec()
            self.metrics.observe(interaction.name, interaction.res_type, status, seconds)
            if interaction.name not in _QUIET or status >= 400:
                log.info(
                    "%s %s %s",
                    scope["method"],
                    interaction.name,
                    status,
                    extra={
                        "fields": {
                            "method": scope["method"],
                            "interaction": interaction.name,
                            "type": interaction.res_type,
                            "status": status,
                            "duration_ms": round(seconds * 1000, 2),
                            "client_id": fields.get("client_id"),
                        }
                    },
                )
            request_fields.reset(fields_token)
            request_id.reset(token)
