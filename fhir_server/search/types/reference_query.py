"""Reference search values (https://hl7.org/fhir/R4/search.html#reference).

`[id]`, `[type]/[id]`, `[type]/[id]/_history/[version]` (the version is ignored, as in the index),
an absolute URL, or a canonical `url|version`. With the `:[type]` modifier the value is an id.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.model import is_resource_type
from fhir_server.search.values import fail, unescape


@dataclass(frozen=True)
class ReferenceValue:
    """A local target (type may be None: any type) or an absolute/canonical `url`."""

    type: str | None
    id: str | None
    url: str | None


def _is_absolute(value: str) -> bool:
    head = value.split("/", 1)[0]
    return ":" in head


def parse_reference(text: str, param: str, type_modifier: str | None = None) -> ReferenceValue:
    """Parse a reference value; `type_modifier` is the resource type of a `:[type]` modifier."""
    value = unescape(text, param)
    if not value:
        fail(param, "an empty reference")
    if type_modifier is not None:
        if value.startswith(type_modifier + "/"):
            value = value[len(type_modifier) + 1 :]
        if "/" in value or _is_absolute(value):
            fail(param, f"with :{type_modifier} the value must be an id, not {value!r}")
        return ReferenceValue(type_modifier, value, None)
    if _is_absolute(value):
        return ReferenceValue(None, None, value)
    parts = value.split("/")
    if len(parts) == 1:
        return ReferenceValue(None, value, None)
    if len(parts) in (2, 4) and is_resource_type(parts[0]) and parts[1]:
        if len(parts) == 4 and (parts[2] != "_history" or not parts[3]):
            fail(param, f"{value!r} is not a reference")
        return ReferenceValue(parts[0], parts[1], None)
    fail(param, f"{value!r} is not a reference ([type]/[id], [id] or an absolute URL)")
