"""Request dependencies as named Annotated aliases (https://fastapi.tiangolo.com/tutorial/dependencies/)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..interactions.context import Context


def get_context(request: Request) -> Context:
    """The interaction context built at start-up (store, settings)."""
    ctx: Context = request.app.state.context
    return ctx


Ctx = Annotated[Context, Depends(get_context)]
