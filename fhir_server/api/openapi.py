"""OpenAPI 3.0 description at `/openapi.json`, and Swagger UI at `/docs`, made from the CapabilityStatement.

https://spec.openapis.org/oas/v3.0.3 from https://hl7.org/fhir/R4/capabilitystatement.html: every path,
method and query parameter comes from `metadata.capability_statement` (its resource types, interactions,
search parameters, operations and security), so the description cannot claim what `/metadata` does not.
An operation's levels (system, type, instance) and methods come from its OperationDefinition: this
server's own (`operations/definitions.py`), or `_PUBLISHED` for HL7's; an advertised operation with
neither is an error (tests/api/test_openapi.py), never a silently missing path.
"""

from __future__ import annotations

import functools
from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from .. import __version__, spec_package
from ..operations import definitions
from ..settings import Settings
from . import metadata

router = APIRouter()

FHIR_JSON = "application/fhir+json"
# The levels this server's routes implement where they differ from the OperationDefinition or HL7's package
# has none (Bulk Data): name (last segment of the canonical URL) -> (levels, methods). Any other HL7
# operation takes its system/type/instance flags from its OperationDefinition in the spec package.
_PUBLISHED: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {
    "export": (frozenset({"system"}), ("get", "post")),  # Bulk Data /$export
    "patient-export": (frozenset({"type"}), ("get", "post")),  # /Patient/$export
    "group-export": (frozenset({"instance"}), ("get", "post")),  # /Group/[id]/$export
    "ValueSet-expand": (frozenset({"type", "instance"}), ("get", "post")),
    "ValueSet-validate-code": (frozenset({"type", "instance"}), ("get", "post")),
    "CodeSystem-lookup": (frozenset({"type"}), ("get", "post")),
    "CodeSystem-subsumes": (frozenset({"type"}), ("get", "post")),
    # R4 declares no affectsState for these, but they change the resource ("not idempotent"): POST only
    "Resource-meta-add": (frozenset({"instance"}), ("post",)),
    "Resource-meta-delete": (frozenset({"instance"}), ("post",)),
    # Subscriptions R5 Backport IG (api/subscription_routes.py)
    "backport-subscription-status": (frozenset({"type", "instance"}), ("get", "post")),
    "backport-subscription-events": (frozenset({"instance"}), ("get", "post")),
}
_RESULT_PARAMETERS = {  # https://hl7.org/fhir/R4/search.html#return
    "_count": {"type": "integer", "minimum": 0},
    "_sort": {"type": "string"},
    "_include": {"type": "string"},
    "_revinclude": {"type": "string"},
    "_summary": {"type": "string", "enum": ["true", "false", "text", "data", "count"]},
    "_elements": {"type": "string"},
    "_total": {"type": "string", "enum": ["none", "estimate", "accurate"]},
}
_ID = {"type": "string", "pattern": "^[A-Za-z0-9\\-\\.]{1,64}$"}  # https://hl7.org/fhir/R4/datatypes.html#id
_VID = {"type": "string", "pattern": "^[0-9]{1,18}$"}
_ANY_RESOURCE = {
    "type": "object",
    "required": ["resourceType"],
    "properties": {"resourceType": {"type": "string"}},
}
_PATCH = {  # https://hl7.org/fhir/R4/http.html#patch with JSON Patch (RFC 6902)
    "type": "array",
    "items": {
        "type": "object",
        "required": ["op", "path"],
        "properties": {
            "op": {"type": "string", "enum": ["add", "remove", "replace", "move", "copy", "test"]},
            "path": {"type": "string"},
            "from": {"type": "string"},
            "value": {},
        },
    },
}


def _resource(res_type: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["resourceType"],
        "properties": {"resourceType": {"type": "string", "enum": [res_type]}, "id": _ID},
    }


def _body(schema: dict[str, Any], media: str = FHIR_JSON) -> dict[str, Any]:
    return {"required": True, "content": {media: {"schema": schema}}}


def _responses(ok: str, description: str) -> dict[str, Any]:
    outcome = {"description": "OperationOutcome", "content": {FHIR_JSON: {"schema": _ANY_RESOURCE}}}
    return {
        ok: {"description": description, "content": {FHIR_JSON: {"schema": _ANY_RESOURCE}}},
        "default": outcome,
    }


def _op(summary: str, op_id: str, tag: str, ok: str = "200", **more: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "operationId": op_id,
        "tags": [tag],
        "responses": _responses(ok, summary),
        **more,
    }


def _path_param(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query(search_params: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = [
        {"name": p["name"], "in": "query", "required": False, "schema": {"type": "string"},
         "description": f"{p['type']} search parameter" + (f" ({p['definition']})" if "definition" in p else "")}
        for p in search_params
    ]  # fmt: skip
    out += [{"name": n, "in": "query", "required": False, "schema": s} for n, s in _RESULT_PARAMETERS.items()]
    return out


def _form(search_params: list[dict[str, Any]]) -> dict[str, Any]:
    names = [p["name"] for p in search_params] + list(_RESULT_PARAMETERS)
    schema = {"type": "object", "properties": {n: {"type": "string"} for n in names}}
    return {"required": False, "content": {"application/x-www-form-urlencoded": {"schema": schema}}}


@functools.cache
def _hl7_definition(name: str) -> dict[str, Any] | None:
    """HL7's own OperationDefinition `name` from the spec package (e.g. Patient-everything), if any."""
    for path, resource in spec_package.resources(f"OperationDefinition-{name}"):
        if path.name == f"OperationDefinition-{name}.json":
            return resource
    return None


def _levels(definition_url: str, base: str) -> tuple[frozenset[str], tuple[str, ...]]:
    name = definition_url.rstrip("/").rsplit("/", 1)[-1]
    if definition_url.startswith(f"{base}/OperationDefinition/") and name in definitions.NAMES:
        d = definitions.definition(name, base)
        levels = frozenset(level for level in ("system", "type", "instance") if d.get(level))
        return levels, ("post",) if d.get("affectsState") else ("get", "post")
    if name not in _PUBLISHED:
        hl7 = definition_url.startswith("http://hl7.org/fhir/OperationDefinition/")
        published = _hl7_definition(name) if hl7 else None
        if published is not None:
            levels = frozenset(level for level in ("system", "type", "instance") if published.get(level))
            return levels, ("post",) if published.get("affectsState") else ("get", "post")
        raise LookupError(f"the advertised operation {definition_url} has no known levels (api/openapi.py)")
    return _PUBLISHED[name]


def _operation_paths(
    paths: dict[str, dict[str, Any]], ops: list[dict[str, Any]], res_type: str | None, base: str
) -> None:
    for op in ops:
        levels, methods = _levels(op["definition"], base)
        where: list[tuple[str, list[dict[str, Any]]]] = []
        if res_type is None and "system" in levels:
            where.append((f"/${op['name']}", []))
        if res_type is not None and "type" in levels:
            where.append((f"/{res_type}/${op['name']}", []))
        if res_type is not None and "instance" in levels:
            where.append((f"/{res_type}/{{id}}/${op['name']}", [_path_param("id", _ID)]))
        for path, params in where:
            for method in methods:
                op_id = f"{method}-{path.strip('/').replace('/', '-').replace('{id}', 'id')}"
                body: dict[str, Any] = {"requestBody": _body(_ANY_RESOURCE)} if method == "post" else {}
                paths.setdefault(path, {})[method] = _op(
                    f"${op['name']} ({op['definition']})",
                    op_id,
                    res_type or "system",
                    parameters=params,
                    **body,
                )


def _type_paths(paths: dict[str, dict[str, Any]], r: dict[str, Any], base: str) -> None:
    t = r["type"]
    codes = {i["code"] for i in r.get("interaction", [])}
    params = r.get("searchParam", [])
    idp, vidp = _path_param("id", _ID), _path_param("vid", _VID)
    type_level: dict[str, Any] = {}
    if "search-type" in codes:
        type_level["get"] = _op(f"search {t}", f"search-{t}", t, parameters=_query(params))
        paths[f"/{t}/_search"] = {
            "post": _op(f"search {t} (form)", f"search-post-{t}", t, requestBody=_form(params))
        }
    if "create" in codes:
        type_level["post"] = _op(f"create {t}", f"create-{t}", t, "201", requestBody=_body(_resource(t)))
    if r.get("conditionalUpdate"):
        type_level["put"] = _op(
            f"conditional update {t}", f"conditional-update-{t}", t,
            parameters=_query(params), requestBody=_body(_resource(t)),
        )  # fmt: skip
    if r.get("conditionalDelete") in ("single", "multiple"):
        type_level["delete"] = _op(
            f"conditional delete {t}", f"conditional-delete-{t}", t, parameters=_query(params)
        )
    if type_level:
        paths[f"/{t}"] = type_level
    instance: dict[str, Any] = {}
    if "read" in codes:
        instance["get"] = _op(f"read {t}", f"read-{t}", t)
    if "update" in codes:
        instance["put"] = _op(f"update {t}", f"update-{t}", t, requestBody=_body(_resource(t)))
    if "patch" in codes:
        instance["patch"] = _op(
            f"patch {t}", f"patch-{t}", t, requestBody=_body(_PATCH, "application/json-patch+json")
        )
    if "delete" in codes:
        instance["delete"] = _op(f"delete {t}", f"delete-{t}", t)
    if instance:
        paths[f"/{t}/{{id}}"] = {"parameters": [idp], **instance}
    if "history-instance" in codes:
        paths[f"/{t}/{{id}}/_history"] = {
            "parameters": [idp],
            "get": _op(f"history of a {t}", f"history-instance-{t}", t),
        }
    if "vread" in codes:
        paths[f"/{t}/{{id}}/_history/{{vid}}"] = {
            "parameters": [idp, vidp],
            "get": _op(f"vread {t}", f"vread-{t}", t),
        }
    if "history-type" in codes:
        paths[f"/{t}/_history"] = {"get": _op(f"history of all {t}", f"history-type-{t}", t)}
    _operation_paths(paths, r.get("operation", []), t, base)


def _security(rest: dict[str, Any]) -> dict[str, Any]:
    """SMART's OAuth endpoints (the oauth-uris extension) as an OAuth2 scheme, and plain bearer tokens."""
    uris = {
        e["url"]: e["valueUri"]
        for ext in rest.get("security", {}).get("extension", [])
        for e in ext.get("extension", [])
    }
    schemes: dict[str, Any] = {"bearer": {"type": "http", "scheme": "bearer"}}
    if "authorize" in uris and "token" in uris:
        schemes["smart"] = {
            "type": "oauth2",
            "description": "SMART App Launch (https://hl7.org/fhir/smart-app-launch/)",
            "flows": {
                "authorizationCode": {
                    "authorizationUrl": uris["authorize"],
                    "tokenUrl": uris["token"],
                    "scopes": {},
                },
                "clientCredentials": {"tokenUrl": uris["token"], "scopes": {}},
            },
        }
    return schemes


def describe(settings: Settings) -> dict[str, Any]:
    """The OpenAPI document for the CapabilityStatement of `settings`."""
    statement = metadata.capability_statement(settings)
    rest = statement["rest"][0]
    paths: dict[str, dict[str, Any]] = {
        "/metadata": {"get": {**_op("CapabilityStatement", "capabilities", "system"), "security": []}},
    }
    codes = {i["code"] for i in rest.get("interaction", [])}
    if codes & {"transaction", "batch"}:
        bundle = {
            "type": "object",
            "required": ["resourceType", "type"],
            "properties": {
                "resourceType": {"type": "string", "enum": ["Bundle"]},
                "type": {"type": "string", "enum": sorted(codes & {"transaction", "batch"})},
                "entry": {"type": "array", "items": {"type": "object"}},
            },
        }
        paths["/"] = {"post": _op("transaction or batch", "transaction", "system", requestBody=_body(bundle))}
    if "search-system" in codes:
        paths.setdefault("/", {})["get"] = _op(
            "search all types", "search-system", "system", parameters=_query([])
        )
    if "history-system" in codes:
        paths["/_history"] = {"get": _op("history of all resources", "history-system", "system")}
    for r in rest["resource"]:
        _type_paths(paths, r, settings.base)
    _operation_paths(paths, rest.get("operation", []), None, settings.base)
    schemes = _security(rest)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "fhir-server",
            "version": __version__,
            "description": f"FHIR {statement['fhirVersion']} REST API, made from {settings.base}/metadata",
        },
        "servers": [{"url": settings.base}],
        "externalDocs": {"url": "https://hl7.org/fhir/R4/http.html"},
        "components": {"securitySchemes": schemes},
        "security": [{name: []} for name in schemes],
        "paths": paths,
    }


_cache: dict[str, bytes] = {}


@router.get("/openapi.json", include_in_schema=False)
async def openapi_json(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    body = _cache.get(settings.base)
    if body is None:
        import orjson

        body = await run_in_threadpool(lambda: orjson.dumps(describe(settings)))
        _cache[settings.base] = body
    return Response(body, media_type="application/json")


@router.get("/docs", include_in_schema=False)
async def swagger_ui(request: Request) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    return get_swagger_ui_html(openapi_url=f"{settings.base_path}/openapi.json", title="fhir-server API")
