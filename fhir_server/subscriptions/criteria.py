"""A Subscription's `criteria`: a search on one resource type (https://hl7.org/fhir/R4/subscription.html#criteria).

The criteria is parsed strictly by the search parser (`search/query.parse`), so an unknown parameter
or another type's parameter is a 400, and it means what the same search means: a version matches
when the search with the criteria plus `_id` finds it (`condition`). Result parameters (`_sort`,
`_include` ...) make no sense for a notification and are refused. A topic canonical is not a
criteria: `filter_criteria.py` turns a topic Subscription into one criteria per resource type. The criteria's index keys (a
single `code` value, a single patient) let a write skip the subscriptions it cannot match.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from sqlalchemy import ColumnElement

from ..errors import FhirError, Invalid
from ..model import is_resource_type
from ..search import plan, query

WHERE = "Subscription.criteria"
_PATIENT_PARAMS = ("patient", "subject")
_PATIENT_REF = re.compile(r"(?:.*/)?Patient/([A-Za-z0-9\-.]{1,64})")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@dataclass(frozen=True)
class Criteria:
    """A parsed criteria: its type, its query (decoded pairs) and its index keys."""

    res_type: str
    text: str  # the query after '?'
    pairs: tuple[tuple[str, str], ...]
    key_code: str | None
    key_patient: str | None


# Recorded by the server through `Tx.record`, whose versions are no change events (docs/audit.md):
# a Subscription on them would never be notified, so it is refused.
NO_CHANGE_EVENTS = frozenset({"AuditEvent"})


def parse(text: object) -> Criteria:
    """The criteria of a Subscription; 400 (at Subscription.criteria) when it is no valid search."""
    if not isinstance(text, str) or not text.strip():
        raise Invalid("A Subscription needs a criteria: a search such as 'Observation?code=...'", WHERE)
    res_type, _, q = text.strip().partition("?")
    res_type = res_type.rsplit("/", 1)[-1] if res_type.startswith(("http://", "https://")) else res_type
    if not is_resource_type(res_type):
        raise Invalid(f"The criteria must start with a resource type, not '{res_type[:64]}'", WHERE)
    if res_type in NO_CHANGE_EVENTS:
        raise Invalid(
            f"{res_type} cannot be subscribed to: the server records them without change events", WHERE
        )
    pairs = tuple(parse_qsl(q, keep_blank_values=True))
    for name, _value in pairs:
        if name.partition(":")[0] in query.RESULT_PARAMETERS or name in ("_format", "_pretty"):
            raise Invalid(f"The criteria may not use the result parameter '{name}'", WHERE)
    try:
        query.parse(res_type, list(pairs), lenient=False)
    except FhirError as exc:
        raise Invalid(f"The criteria is not a valid search on {res_type}: {exc.message}", WHERE) from None
    return Criteria(res_type, q, pairs, _key_code(pairs), _key_patient(pairs))


def search(criteria: Criteria) -> query.SearchQuery:
    """The criteria as a search (parsed now: relative dates are relative to the moment of matching)."""
    return query.parse(criteria.res_type, list(criteria.pairs), lenient=False)


@functools.lru_cache(maxsize=4096)
def condition(res_type: str, text: str, base: str) -> ColumnElement[bool]:
    """The criteria as ONE condition on `tables.resource` (current, not deleted rows)."""
    q = query.parse(res_type, parse_qsl(text, keep_blank_values=True), lenient=False)
    return plan.condition(q, base_url=base or None)


def _single(pairs: tuple[tuple[str, str], ...], names: tuple[str, ...]) -> str | None:
    values = [v for k, v in pairs if k in names]
    if len(values) != 1 or "," in values[0] or "\\" in values[0]:
        return None
    return values[0]


def _key_code(pairs: tuple[tuple[str, str], ...]) -> str | None:
    value = _single(pairs, ("code",))
    if value is None:
        return None
    code = value.rsplit("|", 1)[-1]
    return code if 0 < len(code) <= 255 else None  # the column's size: a longer code is no key


def _key_patient(pairs: tuple[tuple[str, str], ...]) -> str | None:
    value = _single(pairs, _PATIENT_PARAMS)
    if value is None:
        return None
    found = _PATIENT_REF.fullmatch(value)
    if found:
        return found.group(1)
    if any(k == "patient" for k, _ in pairs) and _ID.fullmatch(value):
        return value
    return None


def keys_of(resource: dict[str, object]) -> tuple[set[str], set[str]]:
    """Every `code` string and every Patient id referenced anywhere in a resource: a superset of
    what a criteria's `code` and patient/subject keys can match (the search then decides)."""
    codes: set[str] = set()
    patients: set[str] = set()
    stack: list[object] = [resource]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key == "code" and isinstance(value, str):
                    codes.add(value)
                elif key == "reference" and isinstance(value, str):
                    found = _PATIENT_REF.fullmatch(value)
                    if found:
                        patients.add(found.group(1))
                elif isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    if resource.get("resourceType") == "Patient" and isinstance(resource.get("id"), str):
        patients.add(str(resource["id"]))
    return codes, patients
