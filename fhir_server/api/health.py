"""Liveness and readiness probes: `/healthz` (the process answers) and `/readyz` (it can serve).

Ready means: the database answers, its schema is at the newest migration, and Redis answers when
`FHIR_REDIS_URL` is set. Not ready is a 503 whose body names the failing check (never an error message:
those can quote connection strings). Both are public and carry no data; each check is bounded in time,
so a hung database makes the probe fail rather than hang.
https://kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes/
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ..settings import Settings
from ..store.migrate import is_current
from ..store.sql import Store

log = logging.getLogger("fhir_server.health")
router = APIRouter()
CHECK_SECONDS = 3.0
_NO_STORE = {"Cache-Control": "no-store"}


@router.get("/healthz", include_in_schema=False)
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"}, headers=_NO_STORE)


@router.get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    store: Store = request.app.state.context.store
    checks = {"database": await _bounded(_database, store)}
    if settings.redis_url:
        checks["redis"] = await _bounded(_redis, settings.redis_url)
    ready = all(v == "ok" for v in checks.values())
    body = {"status": "ready" if ready else "not ready", "checks": checks}
    return JSONResponse(body, 200 if ready else 503, headers=_NO_STORE)


async def _bounded(check: Any, arg: Any) -> str:
    """Run a blocking check in a thread; "timeout" after CHECK_SECONDS (the thread is left to finish)."""
    try:
        with anyio.fail_after(CHECK_SECONDS):
            result: str = await anyio.to_thread.run_sync(check, arg, abandon_on_cancel=True)
            return result
    except TimeoutError:
        return "timeout"


def _database(store: Store) -> str:
    try:
        with store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        log.warning("readyz: database unreachable (%s)", type(exc).__name__)
        return "unreachable"
    try:
        current = is_current(store.engine)
    except SQLAlchemyError as exc:
        log.warning("readyz: migration state unreadable (%s)", type(exc).__name__)
        return "unreachable"
    return "ok" if current else "migrations pending"


def _redis(url: str) -> str:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError) as exc:
        log.warning("readyz: redis unreachable (%s)", type(exc).__name__)
        return "unreachable"
    return "ok"
