"""The server answers under the path of its base URL (`FHIR_BASE_URL=https://host/fhir` -> `/fhir/...`).

https://hl7.org/fhir/R4/http.html#general: every interaction URL is `[base]/...`, and discovery
(`[base]/.well-known/smart-configuration`, the token and JWKS URLs it advertises) lives under the base
too. The path keeps its prefix and `root_path` names it (the ASGI way, as behind a proxy that keeps the
prefix), so routing sees the path below the base and `request.url` stays the URL the client used.
Requests outside the base get a 404 OperationOutcome, except the probes and `/metrics`, which an
orchestrator calls at the root.
"""

from __future__ import annotations

import orjson
from starlette.types import Receive, Scope, Send

from ..errors import NotFound
from .http import FHIR_JSON
from .http_middleware import HttpMiddleware

AT_ROOT_TOO = ("/healthz", "/readyz", "/metrics")


def below_base(scope: Scope) -> str:
    """The request's path below the base URL ("/" for the base itself)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root + "/"):
        path = path[len(root) :]
    return path or "/"


class BasePath(HttpMiddleware):
    """Route `prefix/...` as `/...`; anything else outside the prefix is a 404."""

    def __init__(self, app: object, prefix: str) -> None:
        super().__init__(app)  # type: ignore[arg-type]
        self.prefix = prefix

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path == self.prefix:  # `POST [base]` (a transaction) without the trailing slash
            scope = {**scope, "path": path + "/", "root_path": self.prefix}
        elif path.startswith(self.prefix + "/"):
            scope = {**scope, "root_path": self.prefix}
        elif path not in AT_ROOT_TOO:
            body = orjson.dumps(NotFound(f"This server answers under {self.prefix}/").outcome())
            await send(
                {
                    "type": "http.response.start",
                    "status": 404,
                    "headers": [
                        (b"content-type", FHIR_JSON.encode()),
                        (b"content-length", str(len(body)).encode()),
                        (b"x-content-type-options", b"nosniff"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
