"""Token search parameters (https://hl7.org/fhir/R4/search.html#token).

Index rows (param_id, grp, system, code, display): Coding -> one row; CodeableConcept -> one row per
coding plus (None, None, text) when it has text that no coding has as its display; Identifier -> (system, value, type.text) plus, per
Identifier.type coding, an `:of-type` row (type system, type code, identifier value) under the
auxiliary param id; ContactPoint -> (None, value, None) (its system is not a URI, `use` is not
indexed); boolean -> (None, "true"/"false", None); code, string, id, uri... -> (None, value, None).
`display` is the lower-cased display or text. Empty strings are stored as None; values cut to 255.

Search: `code` matches the code in any system, `system|code` both, `|code` a code with no system, `system|`
any code of the system. With `:of-type` the value is `type-system|type-code|identifier-value`;
with `:text` it is text matched against the display or text; with `:in`/`:not-in`, `:above` and
`:below` (terminology modifiers) it is a value set URL or a concept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_

from fhir_server.errors import Invalid
from fhir_server.search.parameters import OF_TYPE_SUFFIX
from fhir_server.search.types.base import LIKE_ESCAPE, Parsing, RowSink, SearchType, SqlContext, like_prefix
from fhir_server.search.values import fail, split, unescape

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
            displays = []
            for coding in _list(element.get("coding")):
                if coding.__class__ is dict:
                    display = _lower(coding.get("display"))
                    rows.append((param_id, grp, _s(coding.get("system")), _s(coding.get("code")), display))
                    displays.append(display)
            text = _lower(element.get("text"))
            if text is not None and text not in displays:  # else a coding's row answers `:text` already
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


# ---------------------------------------------------------------- search values


@dataclass(frozen=True)
class TokenValue:
    """`system_given` False: any system; True with system None: the code must have no system."""

    system: str | None
    code: str | None
    system_given: bool


@dataclass(frozen=True)
class OfTypeValue:
    """An identifier of a given type: Identifier.type coding (system, code) and Identifier.value."""

    type_system: str
    type_code: str
    value: str


@dataclass(frozen=True)
class TextValue:
    """Text to match against a display or text (case-insensitive, starts with)."""

    text: str


@dataclass(frozen=True)
class ValueSetValue:
    """A value set URL for `:in` / `:not-in`."""

    url: str


def parse_token(text: str, param: str) -> TokenValue:
    """Parse `[system|]code`, `|code` or `system|`."""
    parts = split(text, "|", param, maxsplit=1)
    if len(parts) == 1:
        bare = unescape(parts[0], param)
        if not bare:
            fail(param, "a token needs a code or a system")
        return TokenValue(None, bare, False)
    system = unescape(parts[0], param) or None
    code = unescape(parts[1], param) or None
    if system is None and code is None:
        fail(param, f"{text!r} gives neither a system nor a code")
    return TokenValue(system, code, True)


def parse_of_type(text: str, param: str) -> OfTypeValue:
    """Parse `type-system|type-code|value`; all three parts are required."""
    parts = split(text, "|", param, maxsplit=2)
    values = [unescape(p, param) for p in parts]
    if len(values) != 3 or not all(values):
        fail(param, f"{text!r}: :of-type needs system|code|value with all three parts")
    return OfTypeValue(values[0], values[1], values[2])


def parse_text(text: str, param: str) -> TextValue:
    """Unescape text for `:text`."""
    value = unescape(text, param)
    if not value.strip():
        fail(param, ":text needs some text")
    return TextValue(value)


def parse_value_set(text: str, param: str) -> ValueSetValue:
    """Unescape a value set URL for `:in` / `:not-in`."""
    value = unescape(text, param)
    if not value:
        fail(param, "a value set URL is needed")
    return ValueSetValue(value)


# ---------------------------------------------------------------- SQL


def token_test(v: TokenValue, t: Any) -> ColumnElement[bool]:
    """`[system|]code` against one token row (also the `:identifier` rows of a reference)."""
    conds: list[ColumnElement[bool]] = []
    if v.code is not None:
        conds.append(t.c.code == v.code[:MAX])
    if v.system_given:
        conds.append(t.c.system == v.system if v.system is not None else t.c.system.is_(None))
    return and_(*conds)


def token_holds(v: TokenValue, system: str | None, code: str | None) -> bool:
    """`token_test` in Python: does the index row (system, code) match `[system|]code`?"""
    if v.code is not None and code != v.code[:MAX]:
        return False
    return not v.system_given or system == v.system


def _concepts_test(concepts: Iterable[tuple[str | None, str]], t: Any) -> ColumnElement[bool]:
    by_system: dict[str | None, list[str]] = {}
    for system, code in concepts:
        by_system.setdefault(system, []).append(code)
    if not by_system:
        return false()
    return or_(
        *(
            and_(t.c.system == s if s is not None else t.c.system.is_(None), t.c.code.in_(codes))
            for s, codes in by_system.items()
        )
    )


def test(ctx: SqlContext, modifier: str | None, v: Any, t: Any) -> ColumnElement[bool]:
    """One token value against one idx_token row; `:in` (and `:not-in`, negated by the planner),
    `:above` and `:below` ask `ctx.terminology` for the concepts."""
    if isinstance(v, TextValue):
        return t.c.display.like(like_prefix(v.text.lower()) + "%", escape=LIKE_ESCAPE)
    if isinstance(v, OfTypeValue):
        return and_(t.c.system == v.type_system, t.c.code == v.type_code, t.c.display == v.value)
    if isinstance(v, ValueSetValue):
        if ctx.terminology is None:
            raise Invalid(f"Value set searches (:{modifier}) are not supported here", expression=v.url)
        return _concepts_test(ctx.terminology.expand(v.url), t)
    assert isinstance(v, TokenValue)
    if modifier in ("above", "below"):
        if ctx.terminology is None or v.code is None:
            raise Invalid(f"Subsumption searches (:{modifier}) are not supported here")
        return _concepts_test(ctx.terminology.related(v.system, v.code, modifier), t)
    return token_test(v, t)


_PARSERS: dict[str | None, Callable[..., Any]] = {
    "text": parse_text,
    "of-type": parse_of_type,
    "in": parse_value_set,
    "not-in": parse_value_set,
}


def _parser(p: Parsing) -> Callable[[str], Any]:
    return partial(_PARSERS.get(p.modifier, parse_token), param=p.name)


TOKEN = SearchType(
    "token",
    frozenset({"missing", "text", "not", "above", "below", "in", "not-in", "of-type"}),
    _parser,
    test=test,
    sort_column=lambda t, descending: t.c.code,
    selective=lambda modifier: True,
    values=values,
    aux_modifier="of-type",
    aux_suffix=OF_TYPE_SUFFIX,
)
