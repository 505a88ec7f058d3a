"""HTTP details of the FHIR RESTful API: formats, Prefer, ETags, conditional reads, summaries.

https://hl7.org/fhir/R4/http.html (content types, _format, _pretty, Prefer, versioning, conditional
read) and https://hl7.org/fhir/R4/search.html#summary (_summary, _elements). JSON and XML
(https://hl7.org/fhir/R4/xml.html, `fhir_server/xml_format/`): request bodies are read by
`read_json` (either format, to the JSON dict) and answers written by `render`; nothing else in the
server knows which format the client speaks.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request, Response

from .. import input_limits, instant, xml_format
from ..errors import Invalid, NotAcceptable, TooLarge, UnsupportedMediaType
from ..search.summary import subset as summary_subset
from ..store.sql import Stored
from . import prefer

FHIR_JSON = "application/fhir+json"
FHIR_XML = "application/fhir+xml"
JSON_TYPES = {"application/fhir+json", "application/json", "application/json+fhir", "json", "text/json"}
XML_TYPES = {"application/fhir+xml", "application/xml", "application/xml+fhir", "xml", "text/xml"}
PATCH_TYPES = {"application/json-patch+json"}
# a PATCH body: JSON Patch, or FHIRPath Patch (a Parameters resource, JSON or XML)
PATCH_BODY_TYPES = PATCH_TYPES | JSON_TYPES | XML_TYPES


def _mime(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


async def read_json(request: Request, max_bytes: int, *, allow: set[str] | None = None) -> Any:
    """The request body as JSON (a FHIR resource may come as XML: `allow` None): 413 when too large,
    415 for other types, 400 when malformed."""
    ctype = _mime(request.headers.get("content-type", ""))
    accepted = allow if allow is not None else JSON_TYPES | XML_TYPES
    if ctype and ctype not in accepted:
        if ctype in XML_TYPES:
            raise UnsupportedMediaType("XML is not accepted here; send application/json", "Content-Type")
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
    if ctype in XML_TYPES:
        return xml_format.parse(raw)  # expat without DTDs or entities, nesting within MAX_JSON_DEPTH
    return input_limits.loads_json(raw, "$this")  # nesting depth checked before anything recurses


def _named(mime: str) -> str | None:
    """The response type a requested MIME type (or _format shorthand) stands for, None if neither."""
    if mime in JSON_TYPES:
        return "application/json" if mime == "application/json" else FHIR_JSON
    if mime in XML_TYPES:
        return "application/xml" if mime == "application/xml" else FHIR_XML
    return None


def response_type(request: Request) -> str:
    """The response MIME type from _format, else Accept (by q-value, then order); JSON by default."""
    fmt = request.query_params.get("_format")
    if fmt:
        named = _named(_mime(fmt))
        if named is None:
            raise NotAcceptable(f"Unsupported _format '{fmt}'; use json or xml", "_format")
        return named
    accept = request.headers.get("accept", "")
    if not accept or accept.strip() == "*/*":  # unsaid: answer in the format of the request body
        sent = _mime(request.headers.get("content-type", ""))
        return FHIR_XML if sent in XML_TYPES else FHIR_JSON
    choices = []
    for n, item in enumerate(accept.split(",")):
        mime, _, params = item.partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        mime = mime.strip().lower()
        named = FHIR_JSON if mime.endswith("/*") or not mime else _named(mime)
        if named is not None and q > 0:
            choices.append((-q, n, named))
    return min(choices)[2] if choices else FHIR_JSON


def is_xml(mime: str) -> bool:
    """Whether a response type is XML."""
    return mime in (FHIR_XML, "application/xml")


def render(request: Request, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Serialise a body (dict with orjson.Fragment parts, or stored bytes) as the response."""
    mime = response_type(request)
    pretty = request.query_params.get("_pretty") == "true"
    if is_xml(mime):
        doc = orjson.loads(body if isinstance(body, bytes) else orjson.dumps(body))  # Fragments as JSON
        data = xml_format.serialise(doc, pretty=pretty)
    elif isinstance(body, bytes) and not pretty:
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
