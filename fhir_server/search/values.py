"""Search value syntax shared by all types: escaping and prefixes (https://hl7.org/fhir/R4/search.html#escaping).

A parameter value is first split on unescaped `,` (OR), then each part on `$` (composite) and `|`
(token, quantity) with the escapes kept, and only the final pieces are unescaped: `\\,` `\\$` `\\|`
`\\\\` stand for the character itself; any other backslash is illegal. Prefixes
(https://hl7.org/fhir/R4/search.html#prefix) apply to the ordered types number, date and quantity.
"""

from __future__ import annotations

from typing import Literal, NoReturn, cast

from fhir_server.errors import Invalid

Prefix = Literal["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]
PREFIXES: frozenset[str] = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"})
_ESCAPABLE = frozenset("\\,$|")


def fail(param: str, message: str) -> NoReturn:
    """Raise the 400 error for a bad search parameter, naming it in the message and the expression."""
    raise Invalid(f"Search parameter '{param}': {message}", expression=param)


def split(text: str, sep: str, param: str, maxsplit: int = -1) -> list[str]:
    """Split on unescaped `sep`, keeping escapes in the pieces; an illegal escape is an error."""
    if "\\" not in text:  # nothing escaped (the usual case): str.split does the same
        return text.split(sep, maxsplit)
    pieces: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text) or text[i + 1] not in _ESCAPABLE:
                fail(param, f"illegal escape in {text!r} (only \\, \\$ \\| and \\\\ are allowed)")
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep and (maxsplit < 0 or len(pieces) < maxsplit):
            pieces.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    pieces.append("".join(current))
    return pieces


def unescape(text: str, param: str) -> str:
    """Remove the search escapes from a final value piece."""
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text) or text[i + 1] not in _ESCAPABLE:
                fail(param, f"illegal escape in {text!r}")
            out.append(text[i + 1])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def escape(text: str) -> str:
    """The inverse of `unescape`: protect the separator characters of a literal value."""
    return "".join("\\" + ch if ch in _ESCAPABLE else ch for ch in text)


def take_prefix(text: str, param: str) -> tuple[Prefix, str]:
    """Split an ordered value into its prefix (default `eq`) and the rest."""
    head = text[:2]
    if len(text) > 2 and head.isalpha():
        if head not in PREFIXES:
            fail(param, f"unknown prefix {head!r} (expected one of {', '.join(sorted(PREFIXES))})")
        return cast(Prefix, head), text[2:]
    return "eq", text
