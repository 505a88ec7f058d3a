"""Pure ASGI middleware for HTTP requests only (https://asgi.readthedocs.io/en/latest/specs/www.html).

Subclasses implement `http(scope, receive, send)`; lifespan and websocket scopes pass straight through.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class HttpMiddleware:
    """Base of the server's pure ASGI middlewares: only HTTP requests reach `http()`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError
