"""Which FHIR interaction (https://hl7.org/fhir/R4/http.html) a request is, from its method and path alone.

The labels of the request metrics and the fields of the request log: a small, bounded set of values
(the interaction codes of the CapabilityStatement, plus a few for the server's own endpoints), and a
resource type only when it is one the model knows, so a hostile path can never grow the label space.
"""

from __future__ import annotations

from typing import NamedTuple

from ..model import is_resource_type

_OWN = {  # the first path segment of the server's own, non-FHIR endpoints
    ".well-known": "discovery",
    "auth": "auth",
    "admin": "admin",
    "_jobs": "bulk-status",
    "healthz": "health",
    "readyz": "health",
    "metrics": "metrics",
    "openapi.json": "openapi",
    "docs": "openapi",
    "metadata": "capabilities",
}


class Interaction(NamedTuple):
    name: str  # read, vread, update, patch, delete, history-*, create, search-*, transaction, operation, ...
    res_type: str  # the resource type, or "" (system level, or not a known type)


def classify(method: str, path: str) -> Interaction:
    """The interaction of `method` on `path` (the path below the base URL, starting with "/")."""
    method = "GET" if method == "HEAD" else method
    parts = path.strip("/").split("/") if path.strip("/") else []
    if not parts:
        return Interaction("transaction" if method == "POST" else "search-system", "")
    first = parts[0]
    if first in _OWN and _OWN[first] is not None:
        return Interaction(str(_OWN[first]), "")
    if first == "_history":
        return Interaction("history-system", "")
    if first.startswith("$"):
        return Interaction("operation", "")
    if not is_resource_type(first):
        return Interaction("other", "")
    name = _on_type(method, parts[1:])
    return Interaction(name, first)


def _on_type(method: str, rest: list[str]) -> str:
    if not rest:
        return {"GET": "search-type", "POST": "create", "PUT": "update", "DELETE": "delete"}.get(
            method, "other"
        )
    if rest[0] == "_search":
        return "search-type"
    if rest[0] == "_history":
        return "history-type"
    if rest[0].startswith("$"):
        return "operation"
    if len(rest) == 1:
        return {"GET": "read", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, "other")
    if rest[1] == "_history":
        return "vread" if len(rest) == 3 else "history-instance"
    if rest[1].startswith("$"):
        return "operation"
    return "search-compartment"
