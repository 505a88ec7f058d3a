"""HTTP details of the FHIR RESTful API: formats, Prefer, ETags, conditional reads, summaries.

https://hl7.org/fhir/R4/http.html (content types, _format, _pretty, Prefer, versioning, conditional
read) and https://hl7.org/fhir/R4/search.html#summary (_summary, _elements).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request, Response

from .. import input_limits, instant
from ..errors import Invalid, NotAcceptable, TooLarge, UnsupportedMediaType
from ..search.summary import subset as summary_subset
from ..store.sql import Stored
from . import prefer

FHIR_JSON = "application/fhir+json"
JSON_TYPES = {"application/fhir+json", "application/json", "application/json+fhir", "json", "text/json"}
XML_TYPES = {"application/fhir+xml", "application/xml", "application/xml+fhir", "xml", "text/xml"}
PATCH_TYPES = {"application/json-patch+json"}
# a PATCH body: JSON Patch, or FHIRPath Patch (a Parameters resource)
PATCH_BODY_TYPES = PATCH_TYPES | JSON_TYPES


def _mime(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


async def read_json(request: Request, max_bytes: int, *, allow: set[str] | None = None) -> Any:
    """The request body as JSON: 413 when too large, 415 for XML or other types, 400 when malformed."""
    ctype = _mime(request.headers.get("content-type", ""))
    accepted = allow if allow is not None else JSON_TYPES
    if ctype and ctype not in accepted:
        if ctype in XML_TYPES:
            raise UnsupportedMediaType("XML is not supported; send application/fhir+json", "Content-Type")
        raise UnsupportedMediaType(f"Unsupported Content-Type '{ctype}'", "Content-Type")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge(f"The body is larger than the limit of {max_bytes} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise TooLarge(f"The body is larger than the limit of {max_bytes} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise Invalid("The request has no body", "$this")
    return input_limits.loads_json(raw, "$this")  # nesting depth checked before anything recurses


def response_type(request: Request) -> str:
    """The response MIME type from _format or Accept; 406 when only XML is acceptable."""
    fmt = request.query_params.get("_format")
    if fmt:
        mime = _mime(fmt)
        if mime in JSON_TYPES:
            return "application/json" if mime == "application/json" else FHIR_JSON
        raise NotAcceptable(f"Unsupported _format '{fmt}'; this server speaks JSON only", "_format")
    accept = request.headers.get("accept", "")
    if not accept:
        return FHIR_JSON
    wanted = [_mime(a) for a in accept.split(",")]
    if any(w in JSON_TYPES or w.endswith("/*") or w == "*/*" or w == "" for w in wanted):
        return "application/json" if wanted and wanted[0] == "application/json" else FHIR_JSON
    if any(w in XML_TYPES for w in wanted):
        raise NotAcceptable("XML is not supported; ask for application/fhir+json", "Accept")
    return FHIR_JSON


def render(request: Request, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Serialise a body (dict with orjson.Fragment parts, or stored bytes) as the response."""
    mime = response_type(request)
    pretty = request.query_params.get("_pretty") == "true"
    if isinstance(body, bytes) and not pretty:
        data = body
    else:
        if isinstance(body, bytes):
            body = orjson.Fragment(body)
        data = orjson.dumps(body, option=orjson.OPT_INDENT_2 if pretty else 0)
        if pretty and b"\n" not in data[:200]:
            # Fragments are embedded as is; re-indent the whole document for _pretty.
            data = orjson.dumps(orjson.loads(data), option=orjson.OPT_INDENT_2)
    return Response(content=data, status_code=status, media_type=f"{mime}; charset=utf-8", headers=headers)


def resource_headers(stored: Stored) -> dict[str, str]:
    """ETag and Last-Modified of a version (https://hl7.org/fhir/R4/http.html#versioning)."""
    return {"ETag": stored.etag, "Last-Modified": instant.to_http(stored.last_updated)}


def if_match(request: Request) -> int | None:
    """The version named by If-Match, or None; 400 for garbage."""
    value = request.headers.get("if-match")
    if value is None:
        return None
    from ..interactions.bundle_entry import parse_etag

    return parse_etag(value, "If-Match")


def not_modified(request: Request, stored: Stored) -> bool:
    """Conditional read: If-None-Match (version) or If-Modified-Since (time) says the client is current."""
    inm = request.headers.get("if-none-match")
    if inm is not None:
        tags = {t.strip().removeprefix("W/").strip('"') for t in inm.split(",")}
        return "*" in tags or str(stored.version) in tags
    ims = request.headers.get("if-modified-since")
    if ims:
        try:
            since = instant.parse_http(ims)
        except (TypeError, ValueError):
            return False
        return stored.last_updated // 1_000_000 <= since // 1_000_000
    return False


def prefer_return(request: Request) -> str:
    """return=minimal | representation | OperationOutcome (https://hl7.org/fhir/R4/http.html#ops)."""
    return prefer.parse(request.headers.getlist("prefer")).get("return") or "representation"


def prefer_lenient(request: Request) -> bool:
    """Prefer: handling=lenient (https://hl7.org/fhir/R4/search.html#errors)."""
    return prefer.parse(request.headers.getlist("prefer")).get("handling", "").lower() == "lenient"


def subset(stored: Stored, summary: str | None, elements: str | None) -> bytes | dict[str, Any]:
    """Apply _summary / _elements to a read; the result is tagged SUBSETTED."""
    if not summary and not elements:
        return stored.content
    if summary and summary not in ("true", "false", "text", "data", "count"):
        raise Invalid(f"Unknown _summary value '{summary}'", "_summary")
    if summary == "false" and not elements:
        return stored.content
    wanted = [e.strip() for e in (elements or "").split(",") if e.strip()]
    return summary_subset(stored.resource(), summary, wanted)
