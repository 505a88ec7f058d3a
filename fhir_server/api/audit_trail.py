"""Opens the audit record of each request and hands it to the recorder when the response is sent (docs/audit.md).

Inside the request telemetry (so the request id is set) and outside everything else, so 401s, 403s,
404s and 500s are recorded with their status like any other answer. Costs the request a few
attribute writes and one queue put; the AuditEvents are built and written by `audit/recorder.py`.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.types import Message, Receive, Scope, Send

from .. import instant
from ..audit import access as audit_access
from ..audit.access_events import UNAUDITED
from ..audit.recorder import Recorder
from ..structured_logs import request_id
from .base_path import below_base
from .http_middleware import HttpMiddleware
from .interaction import classify


class AuditTrail(HttpMiddleware):
    def __init__(self, app: object, recorder: Recorder) -> None:
        super().__init__(app)  # type: ignore[arg-type]
        self.recorder = recorder

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = below_base(scope)
        interaction = classify(scope["method"], path)
        if interaction.name in UNAUDITED and interaction.name != "other":
            await self.app(scope, receive, send)
            return
        record = audit_access.Access(
            method=scope["method"],
            interaction=interaction.name,
            res_type=interaction.res_type,
            path=path,
            request_id=request_id.get(),
            started_us=instant.now_us(),
        )

        async def observed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = int(message["status"])
            await send(message)

        token = audit_access.begin(record)
        try:
            await self.app(scope, receive, observed_send)
        finally:
            audit_access.end(token)
            record.status = record.status or 500
            record.ended_us = instant.now_us()
            if record.query is None and scope.get("query_string"):
                record.query = scope["query_string"].decode("latin-1")
            if not self.recorder.offer(record):  # back-pressure: wait for room off the event loop
                await run_in_threadpool(self.recorder.submit, record)
