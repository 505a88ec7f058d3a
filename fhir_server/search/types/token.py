"""Token search parameter index values (https://hl7.org/fhir/R4/search.html#token).

Rows (param_id, grp, system, code, display): Coding -> one row; CodeableConcept -> one row per
coding plus (None, None, text) when it has text; Identifier -> (system, value, type.text) plus, per
Identifier.type coding, an `:of-type` row (type system, type code, identifier value) under the
auxiliary param id; ContactPoint -> (None, value, None) (its system is not a URI, `use` is not
indexed); boolean -> (None, "true"/"false", None); code, string, id, uri... -> (None, value, None).
`display` is the lower-cased display or text. Empty strings are stored as None; values cut to 255.
"""

from __future__ import annotations

from typing import Any

from fhir_server.search.types import RowSink

KIND = "token"
MAX = 255
_CODE_TYPES = frozenset(("code", "string", "id", "uri", "url", "canonical", "oid", "uuid", "markdown"))


def _s(value: Any) -> str | None:
    """A string column value: None for anything but a non-empty string."""
    if value.__class__ is str and value:
        return value[:MAX]
    return None


def _lower(value: Any) -> str | None:
    if value.__class__ is str and value:
        return value.lower()[:MAX]
    return None


def _list(value: Any) -> list[Any]:
    return value if value.__class__ is list else []


def _infer(element: Any) -> str:
    """The FHIR type of an element from its JSON shape (for untyped fallback results)."""
    if element.__class__ is bool:
        return "boolean"
    if element.__class__ is str:
        return "code"
    if element.__class__ is dict:
        if "coding" in element or ("text" in element and "code" not in element and "value" not in element):
            return "CodeableConcept"
        if "value" in element and element.get("system") in (
            "phone",
            "fax",
            "email",
            "pager",
            "url",
            "sms",
            "other",
        ):
            return "ContactPoint"
        if "value" in element or "assigner" in element or "type" in element:
            return "Identifier"
        return "Coding"
    return ""


def values(
    elements: list[Any],
    fhir_type: str,
    param_id: int,
    grp: int,
    sink: RowSink,
    aux_param_id: int | None = None,
) -> None:
    """Append the token rows of the elements; `aux_param_id` receives Identifier `:of-type` rows."""
    rows = sink[KIND]
    for element in elements:
        kind = _infer(element) if fhir_type == "*" else fhir_type
        if kind == "CodeableConcept":
            if element.__class__ is not dict:
                continue
            for coding in _list(element.get("coding")):
                if coding.__class__ is dict:
                    rows.append(
                        (
                            param_id,
                            grp,
                            _s(coding.get("system")),
                            _s(coding.get("code")),
                            _lower(coding.get("display")),
                        )
                    )
            text = _lower(element.get("text"))
            if text is not None:
                rows.append((param_id, grp, None, None, text))
        elif kind == "Coding":
            if element.__class__ is dict:
                rows.append(
                    (
                        param_id,
                        grp,
                        _s(element.get("system")),
                        _s(element.get("code")),
                        _lower(element.get("display")),
                    )
                )
        elif kind == "Identifier":
            if element.__class__ is not dict:
                continue
            value = _s(element.get("value"))
            system = _s(element.get("system"))
            type_ = element.get("type")
            if value is not None or system is not None:
                type_text = _lower(type_.get("text")) if type_.__class__ is dict else None
                rows.append((param_id, grp, system, value, type_text))
            if aux_param_id is not None and type_.__class__ is dict and value is not None:
                for coding in _list(type_.get("coding")):
                    if coding.__class__ is dict:
                        rows.append(
                            (
                                aux_param_id,
                                grp,
                                _s(coding.get("system")),
                                _s(coding.get("code")),
                                element["value"][:MAX],
                            )
                        )
        elif kind == "ContactPoint":
            if element.__class__ is dict:
                value = _s(element.get("value"))
                if value is not None:
                    rows.append((param_id, grp, None, value, None))
        elif kind == "boolean":
            if element.__class__ is bool:
                rows.append((param_id, grp, None, "true" if element else "false", None))
        elif kind in _CODE_TYPES:
            value = _s(element)
            if value is not None:
                rows.append((param_id, grp, None, value, None))
