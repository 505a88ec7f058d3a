"""ASGI middleware applying the input limits (`fhir_server/input_limits.py`) to every request, before routing.

Path, query parameters, headers and urlencoded form fields (SMART's /auth/* endpoints, POST
_search, https://hl7.org/fhir/R4/http.html#search) must hold no control characters; integer query
parameters and `_history/{vid}` must fit 64 bits; headers are bounded. A violation is a 400
OperationOutcome naming the parameter, header or field.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.types import Message, Receive, Scope, Send

from .. import input_limits
from ..errors import FhirError, TooLarge
from .http import FHIR_JSON
from .http_middleware import HttpMiddleware

MAX_FORM_BYTES = 1024 * 1024  # urlencoded forms are small: OAuth parameters, a search


class InputLimitsMiddleware(HttpMiddleware):
    """Reject hostile request lines, headers and forms with a 400 before any route sees them."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            _check_request_line(scope)
            headers = _check_headers(scope)
            if headers.get("content-type", "").split(";")[0].strip().lower() == (
                "application/x-www-form-urlencoded"
            ):
                receive = await _checked_form(receive)
        except FhirError as error:
            await _reject(error, send)
            return
        await self.app(scope, receive, send)


def _check_request_line(scope: Scope) -> None:
    path: str = scope.get("path", "")
    input_limits.check_text(path, "url", single_line=True)
    segments = path.split("/")
    for i, segment in enumerate(segments[:-1]):
        if segment == "_history" and segments[i + 1].isdigit():
            input_limits.integer(segments[i + 1], "vid")
    query = scope.get("query_string", b"").decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True):
        input_limits.check_text(name, "url", single_line=True)
        input_limits.check_text(value, name)
        if name in input_limits.INTEGER_PARAMETERS:
            input_limits.integer(value, name)


def _check_headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        input_limits.check_header(name, value)
        headers[name] = value
    return headers


async def _checked_form(receive: Receive) -> Receive:
    """Read the whole (small) form, check its fields, and hand the same body on to the route."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            raise TooLarge(f"The form is larger than the limit of {MAX_FORM_BYTES} bytes")
        chunks.append(chunk)
        more = message.get("more_body", False)
    body = b"".join(chunks)
    for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        input_limits.check_text(name, "form", single_line=True)
        input_limits.check_text(value, name)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _reject(error: FhirError, send: Send) -> None:
    body = orjson.dumps(error.outcome())
    headers: list[Any] = [
        (b"content-type", f"{FHIR_JSON}; charset=utf-8".encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
