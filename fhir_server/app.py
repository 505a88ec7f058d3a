"""create_app(settings) -> FastAPI: routers, error handlers, lifespan. Nothing else."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from profiles import packages

from . import __version__, events, job_kinds
from .api import (
    account_routes,
    auth_routes,
    bulk_routes,
    clinical_routes,
    health,
    http,
    ingest_routes,
    meta_routes,
    metrics,
    openapi,
    registration_routes,
    subscription_routes,
    terminology_routes,
    validation_routes,
)
from .api.audit_trail import AuditTrail
from .api.base_path import BasePath, below_base
from .api.input_limits_middleware import InputLimitsMiddleware
from .api.interaction import classify
from .api.request_telemetry import RequestTelemetry
from .api.routes import router
from .api.security_headers import SecurityHeaders
from .api.server_errors import ServerErrors
from .audit.recorder import Recorder
from .errors import FhirError, Invalid, MethodNotAllowed, NotFound, ServerError
from .interactions.context import Context
from .redacted_traceback import format_exception
from .settings import Settings
from .store import replicas
from .store.engine import make_engine
from .store.sql import Store
from .subscriptions import service as subscriptions
from .warmup import warm_up

log = logging.getLogger("fhir_server")


def create_app(settings: Settings | None = None, *, store: Store | None = None) -> FastAPI:
    """Build the application for the given settings (environment variables by default)."""
    settings = settings or Settings()
    job_kinds.register()  # before any job runs (in-process threads, or the sweeper's give-ups)
    if store is None:
        engine = make_engine(
            settings.database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow
        )
        store = Store(engine, check_references=settings.check_references, base=settings.base)
        warm_up()  # a served process (tests pass their own store): no slow first request
    if settings.read_urls and store.replicas is None:  # FHIR reads on replicas (store/replicas.py)
        store.use_replicas(replicas.routing(store.engine, settings))
    app = FastAPI(title="fhir-server", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.context = Context(store=store, settings=settings)
    packages.load_installed(settings.data_dir)  # profiles added with `fhir-server profiles add`
    subscriptions.install()  # its change-event listener, before the dispatcher starts
    if not settings.redis_url:  # with Redis, `fhir-server worker` delivers change events
        # the threads run with the app's lifespan: an app that is never started (a test's
        # TestClient used without `with`) leaves no dispatcher behind on a shared database
        app.router.on_startup.append(lambda: _start_event_threads(app, store, settings))
    app.state.settings = settings
    if settings.allow_anonymous:
        log.warning(
            "FHIR_ALLOW_ANONYMOUS is on: anyone who can reach this server can read and write all data"
        )
    _error_handlers(app)
    app.add_middleware(ServerErrors)  # innermost: its 500s get the CORS and security headers too
    app.add_middleware(InputLimitsMiddleware)  # 400 for control characters, huge integers and headers
    # CORS for browser apps (SMART app-launch.html#considerations-for-cross-origin-resource-sharing-cors-support)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=False,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
        allow_headers=["*"],
        expose_headers=[
            "Location",
            "Content-Location",
            "ETag",
            "Last-Modified",
            "WWW-Authenticate",
            "X-Progress",
            "Retry-After",
            "Expires",
            "X-Request-ID",
        ],
        max_age=600,
    )
    app.add_middleware(SecurityHeaders)  # nosniff; no-store on PHI (on every response)
    app.state.metrics = metrics.Metrics(store)
    app.state.audit = None
    if settings.audit:  # an AuditEvent for every request and change (docs/audit.md)
        recorder = Recorder(
            store,
            settings.base,
            retention_days=settings.audit_retention_days,
            queue_size=settings.audit_queue_size,
        )
        app.state.audit = recorder
        app.add_middleware(AuditTrail, recorder=recorder)
        app.router.on_shutdown.append(recorder.close)
    app.add_middleware(RequestTelemetry, metrics=app.state.metrics)  # request id, metrics, log line
    if settings.base_path:  # outermost: FHIR_BASE_URL=https://host/fhir serves under /fhir
        app.add_middleware(BasePath, prefix=settings.base_path)
    app.include_router(health.router)  # /healthz, /readyz (public), /metrics (FHIR_METRICS_TOKEN)
    app.include_router(metrics.router)
    app.include_router(openapi.router)  # /openapi.json and /docs, made from the CapabilityStatement
    auth_routes.install(app, store, settings)  # SMART: /.well-known/*, /auth/*, /admin/* (before FHIR routes)
    app.include_router(account_routes.router)  # /auth/account/*: self-service password and TOTP
    app.include_router(registration_routes.router)  # /auth/register: patient self-registration
    app.include_router(bulk_routes.router)  # Bulk Data: before the generic /{type}/{id} routes
    app.include_router(ingest_routes.router)  # $ingest: before the generic POST /{type} route
    app.include_router(terminology_routes.router)  # ValueSet/CodeSystem operations: before /{type}/{id}
    app.include_router(clinical_routes.router)  # $everything, $lastn, $stats: before /{type}/{id}
    app.include_router(validation_routes.router)  # $validate: before /{type}/{id}
    app.include_router(meta_routes.router)  # $meta, $meta-add, $meta-delete: before /{type}/{id}
    app.include_router(subscription_routes.router)  # websocket and Server-Sent Events channels
    app.include_router(router)
    return app


def _start_event_threads(app: FastAPI, store: Store, settings: Settings) -> None:
    """The change-event dispatcher and the rest-hook deliverer of this process, until shutdown."""
    app.state.events = events.start(store)
    app.state.subscriptions = subscriptions.start(store, settings)  # rest-hook deliveries
    app.router.on_shutdown.append(app.state.subscriptions[1].set)  # both threads end with the app
    if app.state.events is not None:
        app.router.on_shutdown.append(app.state.events[1].set)


def _error_handlers(app: FastAPI) -> None:
    def respond(request: Request, error: FhirError) -> Response:
        headers = dict(error.headers)
        try:
            return http.render(request, error.outcome(), error.status, headers)
        except FhirError:  # e.g. the client only accepts XML: still answer in JSON
            import orjson

            return Response(orjson.dumps(error.outcome()), error.status, headers, http.FHIR_JSON)

    @app.exception_handler(FhirError)
    async def fhir_error(request: Request, exc: FhirError) -> Response:
        return respond(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            return respond(
                request, MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
            )
        if exc.status_code == 404:
            return respond(request, NotFound(f"No such path: {request.url.path}"))
        error = Invalid(str(exc.detail))
        error.status = exc.status_code  # type: ignore[misc]
        return respond(request, error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return respond(request, Invalid(f"Invalid request: {exc.errors()[0].get('msg', '')}"))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Any:
        # Only for errors outside ServerErrors; Starlette re-raises after this, and uvicorn closes the connection.
        what = classify(request.method, below_base(request.scope))  # never the path: ids may be names
        log.error(
            "Unexpected error on %s %s %s\n%s",
            request.method,
            what.name,
            what.res_type,
            format_exception(exc),
        )
        error = ServerError("Internal server error", headers={"Connection": "close"})
        return respond(request, error)
