"""Token search values (https://hl7.org/fhir/R4/search.html#token).

`code` matches the code in any system, `system|code` both, `|code` a code with no system, `system|`
any code of the system. With `:of-type` the value is `type-system|type-code|identifier-value`;
with `:text` it is text matched against the display or text; with `:in`/`:not-in`, `:above` and
`:below` (terminology modifiers) it is a value set URL or a concept.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.search.values import fail, split, unescape


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
