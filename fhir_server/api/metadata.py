"""The CapabilityStatement, generated from what is implemented (https://hl7.org/fhir/R4/capabilitystatement.html).

Resource types come from the models, search parameters from the search registry, so the statement
cannot claim what the server does not do.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from .. import __version__, instant, model
from ..auth.principal import SERVER_WRITTEN
from ..auth.smart_configuration import capability_security
from ..jobs import capability as bulk_data
from ..operations import definitions
from ..settings import Settings
from ..subscriptions import topics

_INSTANCE = ["read", "vread", "update", "patch", "delete", "history-instance"]
_TYPE = ["create", "search-type", "history-type"]
_SYSTEM = ["transaction", "batch", "search-system", "history-system"]
# Terminology operations (fhir_server/api/terminology_routes.py), https://hl7.org/fhir/R4/terminology-service.html
_TYPE_OPERATIONS = {
    "ValueSet": ["ValueSet-expand", "ValueSet-validate-code"],
    "CodeSystem": ["CodeSystem-lookup", "CodeSystem-subsumes"],
    # Clinical operations (fhir_server/api/clinical_routes.py)
    "Patient": ["Patient-everything"],
    "Observation": ["Observation-lastn"],
}


# $meta, $meta-add, $meta-delete (fhir_server/api/meta_routes.py), every type
_META_OPERATIONS = ["Resource-meta", "Resource-meta-add", "Resource-meta-delete"]


def _type_operations(res_type: str) -> dict[str, Any]:
    ops = [
        {"name": op.split("-", 1)[1], "definition": f"http://hl7.org/fhir/OperationDefinition/{op}"}
        for op in [
            *_TYPE_OPERATIONS.get(res_type, []),
            "Resource-validate",  # validation_routes.py
            *_META_OPERATIONS,
        ]
    ]
    ops += bulk_data.type_operations(res_type)  # Bulk Data Patient/Group $export
    return {"operation": ops} if ops else {}


def _search_params(res_type: str) -> list[dict[str, Any]]:
    try:
        from ..search import parameters
    except ImportError:  # pragma: no cover - the registry ships with the package
        return []
    out = []
    for code, param in sorted(parameters.for_type(res_type).items()):
        if param.type == "special":  # e.g. Location near: not served
            continue
        entry = {"name": code, "type": param.type}
        if param.url:
            entry["definition"] = param.url
        out.append(entry)
    return out


# AuditEvent: recorded by the server alone (docs/audit.md), clients only read and search it
_SERVER_WRITTEN = {
    "interaction": [
        {"code": c} for c in _INSTANCE + _TYPE if c not in ("create", "update", "patch", "delete")
    ],
    "updateCreate": False,
    "conditionalCreate": False,
    "conditionalUpdate": False,
    "conditionalDelete": "not-supported",
}


@cache
def _rest_resources() -> tuple[dict[str, Any], ...]:
    out = []
    for res_type in sorted(model.resource_types()):
        out.append(
            {
                "type": res_type,
                "interaction": [{"code": c} for c in _INSTANCE + _TYPE],
                "versioning": "versioned-update",
                "readHistory": True,
                "updateCreate": True,
                "conditionalCreate": True,
                "conditionalRead": "full-support",
                "conditionalUpdate": True,
                "conditionalDelete": "single",
                "referencePolicy": ["literal", "local"],
                "searchParam": _search_params(res_type),
                **(_SERVER_WRITTEN if res_type in SERVER_WRITTEN else {}),
                **_type_operations(res_type),
            }
        )
    return tuple(out)


def _own_operation(name: str, base: str) -> dict[str, Any]:
    return {"name": name, "definition": f"{base}/OperationDefinition/{name}"}  # operations/definitions.py


def _resources(base: str) -> list[dict[str, Any]]:
    """The resources, Patient with its `$ingest`, Observation with `$stats` (the definitions' URLs
    depend on the base)."""
    out = list(_rest_resources())
    for i, entry in enumerate(out):
        if entry["type"] == "Patient":
            out[i] = {**entry, "operation": [*entry.get("operation", []), _own_operation("ingest", base)]}
        if entry["type"] == "Observation":  # $stats with its series form: our definition
            stats = {"name": "stats", "definition": f"{base}/OperationDefinition/{definitions.STATS_SERIES}"}
            out[i] = {**entry, "operation": [*entry.get("operation", []), stats]}
        if entry["type"] == "Subscription":  # docs/subscriptions.md
            out[i] = {
                **entry,
                "extension": topics.capability_extensions(),  # the topics (subscriptions/shipped_topics.py)
                "documentation": SUBSCRIPTIONS,
                "operation": [
                    *entry.get("operation", []),
                    *SUBSCRIPTION_OPERATIONS,
                    {
                        "name": "topic-list",
                        "definition": f"{base}/OperationDefinition/{definitions.TOPIC_LIST}",
                    },
                ],
            }
    return out


SUBSCRIPTIONS = (
    "R4 criteria-based Subscriptions (criteria: a search on one type, checked like that search). "
    "channel.type: rest-hook (payload none: POST to the endpoint; application/fhir+json: PUT/DELETE "
    "[endpoint]/[type]/[id]; channel.header sent); websocket at [base]/websocket (bind <id>, bound, "
    "ping <id>); Server-Sent Events at [base]/_subscriptions/<id>/events (a custom channel type: "
    "channel.type with the backport-channel-type extension, Coding urn:fhir-server:subscription-"
    "channel-type|sse; Last-Event-ID resumes). The server sets status (active, error, off) and "
    "error; delivery in order per Subscription, retried with exponential backoff; notifications carry "
    "only what the owner's scopes may read at delivery. Topic-based Subscriptions (Subscriptions R5 "
    "Backport IG STU 1.1): criteria a topic canonical listed in this resource's "
    "capabilitystatement-subscriptiontopic-canonical extensions, filters as backport-filter-criteria "
    "('name=value' or 'Type?name=value'; patient, code, category), content by backport-payload-content "
    "(empty, id-only, full-resource), backport-heartbeat-period, backport-timeout; rest-hook "
    "notifications are history Bundles POSTed to the endpoint (the Subscription is requested until its "
    "handshake is answered, then active), backport-max-count, $status, $events and $topic-list. "
    "Not supported: conditional update and patch of a Subscription."
)
_BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition"
SUBSCRIPTION_OPERATIONS = (
    {"name": "status", "definition": f"{_BACKPORT}/backport-subscription-status"},
    {"name": "events", "definition": f"{_BACKPORT}/backport-subscription-events"},
)


def capability_statement(settings: Settings, mode: str = "full") -> dict[str, Any]:
    """The server's CapabilityStatement (mode=normative answers the same)."""
    return {
        "resourceType": "CapabilityStatement",
        "instantiates": [bulk_data.INSTANTIATES],
        "status": "active",
        "date": instant.to_fhir(instant.now_us())[:10],
        "publisher": "fhir-server",
        "kind": "instance",
        "software": {"name": "fhir-server", "version": __version__},
        "implementation": {"description": "FHIR R4 server", "url": settings.base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/json", "application/fhir+xml", "application/xml"],
        # JSON Patch; FHIRPath Patch (a Parameters body) in JSON or XML
        "patchFormat": ["application/json-patch+json", "application/fhir+json", "application/fhir+xml"],
        "rest": [
            {
                "mode": "server",
                "security": capability_security(settings.base),  # SMART conformance.html
                "resource": _resources(settings.base),
                "interaction": [{"code": c} for c in _SYSTEM],
                "operation": [
                    *bulk_data.system_operations(),
                    _own_operation("import", settings.base),
                    _own_operation("ingest", settings.base),
                    {"name": "meta", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-meta"},
                ],
            }
        ],
    }
