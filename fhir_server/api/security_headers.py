"""`X-Content-Type-Options: nosniff` on every response, `Cache-Control: no-store` on those with PHI.

https://hl7.org/fhir/R4/security.html#http: FHIR resources and Bundles carry patient data, so
neither browsers nor shared caches may keep them. The CapabilityStatement and the discovery
documents under /.well-known hold none and stay cacheable; a response that sets its own
Cache-Control (e.g. the JWKS) keeps it.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import Message, Receive, Scope, Send

from .base_path import below_base
from .http_middleware import HttpMiddleware


class SecurityHeaders(HttpMiddleware):
    """Pure ASGI middleware adding the headers as the response starts."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = below_base(scope)
        cacheable = path == "/metadata" or path.startswith("/.well-known/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                if not cacheable:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)
