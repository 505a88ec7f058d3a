"""URI search values (https://hl7.org/fhir/R4/search.html#uri).

A uri matches exactly (case-sensitive); `:below` also matches URLs under it by path segment, and
`:above` matches the URL itself and its ancestors by path segment (URLs only, not URNs).
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.search.values import fail, unescape


@dataclass(frozen=True)
class UriValue:
    """A URI to match."""

    uri: str


def parse_uri(text: str, param: str) -> UriValue:
    """Unescape a uri value."""
    value = unescape(text, param)
    if not value:
        fail(param, "an empty uri")
    return UriValue(value)


def is_url(uri: str) -> bool:
    """True for hierarchical URLs (scheme://authority/...), where :above and :below apply."""
    scheme, sep, rest = uri.partition("://")
    return bool(sep and scheme and rest)


def ancestors(uri: str) -> tuple[str, ...]:
    """The URL and every ancestor by path segment, each with and without a trailing slash."""
    if not is_url(uri):
        return (uri,)
    scheme, _, rest = uri.partition("://")
    segments = rest.rstrip("/").split("/")
    out: list[str] = [uri]
    for n in range(len(segments), 0, -1):
        base = f"{scheme}://{'/'.join(segments[:n])}"
        out.extend((base, base + "/"))
    return tuple(dict.fromkeys(out))
