"""read: GET [base]/[type]/[id] (https://hl7.org/fhir/R4/http.html#read)."""

from __future__ import annotations

from ..errors import Gone, NotFound
from ..model import is_resource_type
from ..store.sql import Stored, Tx


def check_type(res_type: str) -> None:
    """404 for a type we do not know (https://hl7.org/fhir/R4/http.html#general)."""
    if not is_resource_type(res_type):
        raise NotFound(f"Unknown resource type '{res_type}'")


def read(tx: Tx, res_type: str, res_id: str) -> Stored:
    """The current version; 404 if it never existed, 410 if it is deleted."""
    check_type(res_type)
    stored = tx.current(res_type, res_id)
    if stored is None:
        raise NotFound(f"{res_type}/{res_id} is not known")
    if stored.deleted:
        raise Gone(f"{res_type}/{res_id} was deleted", headers={"ETag": stored.etag})
    return stored
