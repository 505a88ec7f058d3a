"""The Prefer request header as an RFC 7240 list (https://www.rfc-editor.org/rfc/rfc7240#section-2).

`Prefer: respond-async, handling=lenient` (one header or several) -> {"respond-async": "",
"handling": "lenient"}. Preference names are case-insensitive; values may be quoted strings;
`;`-parameters of a preference are ignored; the first occurrence of a preference wins.
"""

from __future__ import annotations

from collections.abc import Iterable


def _split(text: str, sep: str) -> list[str]:
    """Split on `sep` outside double-quoted strings."""
    parts, current, quoted, escaped = [], [], False, False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            current.append(ch)
            escaped = True
        elif ch == '"':
            current.append(ch)
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        inner = value[1:-1]
        out, escaped = [], False
        for ch in inner:
            if escaped:
                out.append(ch)
                escaped = False
            elif ch == "\\":
                escaped = True
            else:
                out.append(ch)
        return "".join(out)
    return value


def parse(headers: Iterable[str]) -> dict[str, str]:
    """The preferences of every Prefer header value, by lower-cased name."""
    prefs: dict[str, str] = {}
    for header in headers:
        for item in _split(header, ","):
            first = _split(item, ";")[0]
            name, _, value = first.partition("=")
            name = name.strip().lower()
            if name and name not in prefs:
                prefs[name] = _unquote(value)
    return prefs


def respond_async(prefs: dict[str, str]) -> bool:
    return "respond-async" in prefs


def lenient(prefs: dict[str, str]) -> bool:
    return prefs.get("handling", "").lower() == "lenient"
