"""R4 primitive datatypes: JSON representation and value regex (https://hl7.org/fhir/R4/datatypes.html#primitive).

The regexes are read from each primitive's StructureDefinition (`<type>.value`, extension
`http://hl7.org/fhir/StructureDefinition/regex`), so they are the 4.0.1 rules verbatim; the JSON
kind (string, number, boolean) comes from https://hl7.org/fhir/R4/json.html#primitive.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

from . import definitions

INTEGERS = frozenset({"integer", "unsignedInt", "positiveInt"})
NAMES = frozenset(
    {
        "boolean", "integer", "string", "decimal", "uri", "url", "canonical", "base64Binary", "instant",
        "date", "dateTime", "time", "code", "oid", "id", "markdown", "unsignedInt", "positiveInt", "uuid",
        "xhtml",
    }
)  # fmt: skip
_REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
_FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
MAX_STRING = 1024 * 1024  # https://hl7.org/fhir/R4/datatypes.html#string: SHALL NOT exceed 1MB

Check = Callable[[Any], str | None]


def fhir_type(type_entry: dict[str, Any]) -> str:
    """The FHIR type name of an ElementDefinition.type (System.String ids and urls name theirs in an extension)."""
    code = type_entry.get("code", "")
    if code.startswith("http://hl7.org/fhirpath/System."):
        for ext in type_entry.get("extension", ()):
            if ext.get("url") == _FHIR_TYPE_EXT:
                return str(ext.get("valueUrl") or ext.get("valueUri") or "string")
        return "string"
    return str(code)


@cache
def regex(type_name: str) -> re.Pattern[str] | None:
    """The 4.0.1 regex of a primitive type's value, or None (xhtml has none)."""
    sd = definitions.find(definitions.base_url(type_name))
    if sd is None:
        return None
    for element in sd["snapshot"]["element"]:
        if element.get("path") == f"{type_name}.value":
            for t in element.get("type", ()):
                for ext in t.get("extension", ()):
                    if ext.get("url") == _REGEX_EXT:
                        # string and markdown: \S as in the Java regexes HL7 checks them with (a
                        # no-break space is text); codes, ids ...: Unicode whitespace is whitespace,
                        # as the R4B models held it
                        flags = re.ASCII if type_name in ("string", "markdown") else 0
                        return re.compile(f"(?:{ext['valueString']})", flags)
    return None


@cache
def checker(type_name: str) -> Check:
    """A function telling why a JSON value is not a valid `type_name`, or None when it is."""
    if type_name == "boolean":
        return lambda v: None if isinstance(v, bool) else "must be a JSON boolean"
    if type_name in INTEGERS:
        low = {"integer": -(2**31), "unsignedInt": 0, "positiveInt": 1}[type_name]

        def check_int(v: Any) -> str | None:
            if isinstance(v, bool) or not isinstance(v, int):
                return f"must be a JSON integer ({type_name})"
            if not low <= v <= 2**31 - 1:
                return f"{v} is out of range for {type_name}"
            return None

        return check_int
    if type_name == "decimal":
        return lambda v: (
            None if isinstance(v, (int, float)) and not isinstance(v, bool) else "must be a JSON number"
        )
    pattern = regex(type_name)
    match = pattern.fullmatch if pattern is not None else None
    if type_name == "xhtml":
        return lambda v: None if isinstance(v, str) else "must be a JSON string"

    def check_str(v: Any) -> str | None:
        if not isinstance(v, str):
            return f"must be a JSON string ({type_name})"
        if len(v) > MAX_STRING:
            return "strings may not exceed 1 MB"
        if match is not None and match(v) is None:
            if not v.strip():
                return "must not be empty or only whitespace"
            return f"'{_short(v)}' is not a valid {type_name}"
        return None

    return check_str


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."
