"""Structured logs: one JSON object per line, each with the id of the request it belongs to (docs/logging.md).

`request_id` is a context variable the request telemetry middleware sets for each HTTP request (and the
threads it runs work in inherit); every record gets it as a field, so one request's lines can be found
together and matched with the `X-Request-ID` response header. A record's `exc_info` is written by
`redacted_traceback` (types and frames, never the message, which may quote patient data).
"""

from __future__ import annotations

import contextvars
import logging
import logging.config
import sys
import time
from typing import Any

import orjson

from .redacted_traceback import format_exception

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
# The request's own fields, filled in while it runs (the client id, once the token is checked) and
# written with its request line: a mutable holder, so what the handlers learn reaches the middleware.
request_fields: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "request_fields", default=None
)


def note_client(client_id: str) -> None:
    """The client id of the current request's access token (an app's id: never a person's)."""
    fields = request_fields.get()
    if fields is not None:
        fields["client_id"] = client_id


class RequestIdFilter(logging.Filter):
    """Give every record the current request id (empty outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """A record as one JSON line: time, level, logger, message, request id and the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", "") or request_id.get()
        if rid:
            out["request_id"] = rid
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update({k: v for k, v in fields.items() if k not in out})
        if record.exc_info and record.exc_info[1] is not None:
            out["exception"] = format_exception(record.exc_info[1])
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """Plain lines for a developer's terminal, with the request id and the record's `fields`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record) if not record.exc_info else self._without_exception(record)
        rid = getattr(record, "request_id", "")
        fields = getattr(record, "fields", None)
        extra = " ".join(f"{k}={v}" for k, v in fields.items()) if isinstance(fields, dict) else ""
        return " ".join(p for p in (line, extra, f"request_id={rid}" if rid else "") if p)

    def _without_exception(self, record: logging.LogRecord) -> str:
        exc = record.exc_info[1] if record.exc_info else None
        record.exc_info, record.exc_text = None, None
        line = super().format(record)
        return line + ("\n" + format_exception(exc) if exc is not None else "")


class StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at each record (as `logging.lastResort` does), so a stream
    replaced after configuration (a test's capture, a daemon's redirect) is never written to closed."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def config(log_format: str = "json", level: str = "info") -> dict[str, Any]:
    """A `logging.config.dictConfig` for the root logger (and uvicorn's, which would keep their own)."""
    formatter = (
        "fhir_server.structured_logs.JsonFormatter"
        if log_format == "json"
        else ("fhir_server.structured_logs.TextFormatter")
    )
    handler = {
        "()": "fhir_server.structured_logs.StderrHandler",
        "formatter": "main",
        "filters": ["request_id"],
    }
    quiet = {"handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "fhir_server.structured_logs.RequestIdFilter"}},
        "formatters": {"main": {"()": formatter}},
        "handlers": {"main": handler},
        "root": {"handlers": ["main"], "level": level.upper()},
        "loggers": {
            "uvicorn": quiet,
            "uvicorn.error": quiet,
            "uvicorn.access": quiet,
            "alembic.runtime.plugins": {"level": "WARNING"},  # a line per plugin at every start
            "alembic.runtime.migration": {"level": "WARNING"},  # `migrate` says what it did itself
        },
    }


def configure(log_format: str = "json", level: str = "info") -> None:
    """Send every log record to stderr in `log_format` ("json" or "text")."""
    logging.config.dictConfig(config(log_format, level))
