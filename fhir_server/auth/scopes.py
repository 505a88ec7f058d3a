"""SMART scopes, v1 and v2 (https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html).

A scope string is parsed into frozen values; nothing here knows about HTTP or storage.

* Clinical scopes: `<patient|user|system>/<Type|*>.<c?r?u?d?s?>[?param=value&...]` (v2) and
  `<patient|user|system>/<Type|*>.<read|write|*>` (v1: read = rs, write = cud, * = cruds).
* Launch context scopes: `launch`, `launch/patient`, `launch/encounter`, `launch/<lowercase type>`,
  optionally with `?role=<uri>`.
* Identity and refresh scopes: `openid`, `fhirUser`, `profile`, `offline_access`, `online_access`.

Tokens that are not understood (unknown names, out-of-order interactions like `.sr`, v1 verbs with
a query) are kept aside in `ScopeSet.ignored`; the spec lets a server ignore them.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable
from dataclasses import dataclass, field, replace
from typing import Literal, cast, get_args
from urllib.parse import quote, unquote

Context = Literal["patient", "user", "system"]
Interaction = Literal["c", "r", "u", "d", "s"]

CONTEXTS: tuple[Context, ...] = get_args(Context)
INTERACTIONS = "cruds"
INTERACTION_LETTERS: tuple[Interaction, ...] = get_args(Interaction)
V1_VERBS: dict[str, str] = {"read": "rs", "write": "cud", "*": "cruds"}
NAMED_SCOPES = frozenset({"openid", "fhirUser", "profile", "offline_access", "online_access"})

Query = tuple[tuple[str, str], ...]
"""A granular restriction: FHIR search parameters that must all match (sorted, no duplicates)."""

_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")  # RFC 6749 section 3.3 scope-token
_RESOURCE = re.compile(r"(patient|user|system)/(\*|[A-Z][A-Za-z]{0,63})\.([a-z*]+)")
_V2_LETTERS = re.compile(r"c?r?u?d?s?")
_PARAM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:\-]*")
_LAUNCH = re.compile(r"launch(?:/([a-z][a-z0-9]*))?")
# Characters of a scope-token that may stand unescaped in a query value ('%' and '&' excluded).
_VALUE_SAFE = "!#$'()*+,-./:;<=>?@[]^_`{|}~"


@dataclass(frozen=True, slots=True, order=True)
class ResourceScope:
    """One clinical scope: who (context), what (resource type or `*`), how (interactions), which (query)."""

    context: Context
    resource_type: str
    interactions: str
    query: Query = ()
    v1: bool = False

    def __post_init__(self) -> None:
        if self.context not in CONTEXTS:
            raise ValueError(f"unknown scope context {self.context!r}")
        if self.resource_type != "*" and not re.fullmatch(r"[A-Z][A-Za-z]{0,63}", self.resource_type):
            raise ValueError(f"not a resource type: {self.resource_type!r}")
        if not self.interactions or not _V2_LETTERS.fullmatch(self.interactions):
            raise ValueError(f"interactions must be an in-order subset of 'cruds': {self.interactions!r}")
        if self.v1 and (self.interactions not in V1_VERBS.values() or self.query):
            raise ValueError("a v1 scope is .read, .write or .* without a query")
        if list(self.query) != sorted(set(self.query)):
            raise ValueError("query must be sorted and free of duplicates; use make_query()")
        for name, value in self.query:
            if not _PARAM_NAME.fullmatch(name) or not value:
                raise ValueError(f"bad query parameter {name!r}={value!r}")

    def grants(self, interaction: Interaction) -> bool:
        return interaction in self.interactions

    def as_v2(self) -> ResourceScope:
        """The same scope in v2 syntax (v1 `.read` is v2 `.rs`, and so on)."""
        return replace(self, v1=False)

    def __str__(self) -> str:
        if self.v1:
            verb = next(v for v, letters in V1_VERBS.items() if letters == self.interactions)
            return f"{self.context}/{self.resource_type}.{verb}"
        text = f"{self.context}/{self.resource_type}.{self.interactions}"
        if self.query:
            text += "?" + "&".join(f"{name}={quote(value, safe=_VALUE_SAFE)}" for name, value in self.query)
        return text


@dataclass(frozen=True, slots=True)
class LaunchScope:
    """`launch` (EHR launch), `launch/patient`, `launch/encounter`, `launch/<type>[?role=<uri>]`."""

    context: str | None = None
    role: str | None = None

    def __post_init__(self) -> None:
        if self.context is not None and not re.fullmatch(r"[a-z][a-z0-9]*", self.context):
            raise ValueError(f"launch context must be a lowercase name: {self.context!r}")
        if self.role is not None and (self.context is None or not self.role):
            raise ValueError("a role needs a launch context and a value")

    def __str__(self) -> str:
        text = "launch" if self.context is None else f"launch/{self.context}"
        if self.role is not None:
            text += "?role=" + quote(self.role, safe=_VALUE_SAFE)
        return text


@dataclass(frozen=True)
class ScopeSet:
    """The scopes of a request or a grant. Equal sets grant the same; `ignored` is not compared."""

    resources: frozenset[ResourceScope] = frozenset()
    launch: frozenset[LaunchScope] = frozenset()
    named: frozenset[str] = frozenset()
    ignored: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        unknown = self.named - NAMED_SCOPES
        if unknown:
            raise ValueError(f"unknown named scopes {sorted(unknown)}")

    def permits(self, context: Context, resource_type: str, interaction: Interaction) -> list[ResourceScope]:
        """The scopes that grant `interaction` on `resource_type` in `context`, with their queries.

        `resource_type="*"` asks for every type at once (system-level search without `_type`);
        only wildcard scopes grant that. An empty list means: not permitted.
        """
        return sorted(
            s
            for s in self.resources
            if s.context == context
            and s.resource_type in ("*", resource_type)
            and interaction in s.interactions
        )

    def has(self, name: str) -> bool:
        """True for a granted named scope (`openid`, `fhirUser`, ...) or launch scope (`launch/patient`)."""
        return name in self.named or any(str(launch) == name for launch in self.launch)

    @property
    def launch_contexts(self) -> frozenset[str]:
        """The contexts asked for with `launch/<context>` (e.g. {'patient', 'encounter'})."""
        return frozenset(s.context for s in self.launch if s.context is not None)

    @property
    def needs_patient(self) -> bool:
        """A patient must be in context when patient-level scopes (or `launch/patient`) are granted."""
        return "patient" in self.launch_contexts or any(s.context == "patient" for s in self.resources)

    def to_string(self) -> str:
        """The space-separated scope string (sorted; ignored tokens left out)."""
        tokens = [*map(str, self.resources), *map(str, self.launch), *self.named]
        return " ".join(sorted(tokens))

    def __str__(self) -> str:
        return self.to_string()


class ScopeNotGranted(ValueError):
    """A refresh request asked for scopes beyond the original grant (OAuth error `invalid_scope`)."""

    def __init__(self, scopes: Iterable[str]) -> None:
        self.scopes = tuple(scopes)
        super().__init__("scope not granted: " + " ".join(self.scopes))


def make_query(pairs: Iterable[tuple[str, str]]) -> Query:
    """Canonical form of granular restrictions: AND-ed, so order and repetition do not matter."""
    return tuple(sorted(set(pairs)))


def parse(scope_str: str | None, *, resource_types: Container[str] | None = None) -> ScopeSet:
    """Parse a space-separated scope string. Unknown or invalid tokens go to `ignored`.

    `resource_types`, when given, is the set of resource types the server knows; scopes naming
    another type are ignored too.
    """
    resources: set[ResourceScope] = set()
    launches: set[LaunchScope] = set()
    named: set[str] = set()
    ignored: list[str] = []
    for token in (scope_str or "").split():
        item = _parse_token(token)
        if isinstance(item, ResourceScope) and (
            resource_types is None or item.resource_type == "*" or item.resource_type in resource_types
        ):
            resources.add(item)
        elif isinstance(item, LaunchScope):
            launches.add(item)
        elif isinstance(item, str):
            named.add(item)
        else:
            ignored.append(token)
    return ScopeSet(frozenset(resources), frozenset(launches), frozenset(named), tuple(ignored))


def _parse_token(token: str) -> ResourceScope | LaunchScope | str | None:
    if not _TOKEN.fullmatch(token):
        return None
    if token in NAMED_SCOPES:
        return token
    head, has_query, tail = token.partition("?")
    query = _parse_query(tail) if has_query else ()
    if query is None:
        return None
    if launch := _LAUNCH.fullmatch(head):
        return _launch_scope(launch.group(1), query)
    resource = _RESOURCE.fullmatch(head)
    if resource is None:
        return None
    context, resource_type, verb = resource.groups()
    v1 = verb in V1_VERBS
    letters = V1_VERBS.get(verb, verb)
    if not letters or not _V2_LETTERS.fullmatch(letters) or (v1 and query):
        return None
    return ResourceScope(cast(Context, context), resource_type, letters, query, v1)


def _launch_scope(context: str | None, query: Query) -> LaunchScope | None:
    if not query:
        return LaunchScope(context)
    if context is None or len(query) != 1 or query[0][0] != "role":
        return None
    return LaunchScope(context, query[0][1])


def _parse_query(text: str) -> Query | None:
    pairs = []
    for part in text.split("&"):
        name, has_value, raw = part.partition("=")
        if not has_value or not _PARAM_NAME.fullmatch(name):
            return None
        try:
            value = unquote(raw, errors="strict")
        except UnicodeDecodeError:
            return None
        if not value:
            return None
        pairs.append((name, value))
    return make_query(pairs)


def _covers(granted: ResourceScope, wanted: ResourceScope, interaction: str) -> bool:
    """`granted` allows `interaction` on everything `wanted` describes."""
    return (
        granted.context == wanted.context
        and granted.resource_type in ("*", wanted.resource_type)
        and interaction in granted.interactions
        and set(granted.query) <= set(wanted.query)
    )


def _covered(wanted: ResourceScope, by: Iterable[ResourceScope]) -> bool:
    scopes = list(by)
    return all(any(_covers(g, wanted, i) for g in scopes) for i in wanted.interactions)


def narrow(granted: ScopeSet, requested: ScopeSet | None) -> ScopeSet:
    """The scopes of a refreshed token: the original grant, or a subset of it (RFC 6749 section 6).

    `None` (no `scope` parameter) means the same scopes as granted. Asking for anything the grant
    does not cover, including tokens this parser does not understand, raises `ScopeNotGranted`.
    """
    if requested is None:
        return replace(granted, ignored=())
    extra = [str(s) for s in requested.resources if not _covered(s, granted.resources)]
    extra += [str(s) for s in requested.launch - granted.launch]
    extra += sorted(requested.named - granted.named)
    extra += requested.ignored
    if extra:
        raise ScopeNotGranted(extra)
    return replace(requested, ignored=())


def grantable(requested: ScopeSet, allowed: ScopeSet) -> ScopeSet:
    """The part of `requested` that lies within `allowed` (e.g. a Backend Services client's policy).

    A clinical scope only partly allowed is cut down to its intersection with the allowed scopes
    (fewer interactions, a concrete type for `*`, the allowed query restrictions added). Whatever
    is dropped entirely is listed in `ignored`.
    """
    resources: set[ResourceScope] = set()
    dropped: list[str] = []
    for wanted in requested.resources:
        if _covered(wanted, allowed.resources):
            resources.add(wanted)
            continue
        pieces = {p for a in allowed.resources if (p := _intersection(wanted, a)) is not None}
        resources |= pieces
        if not pieces:
            dropped.append(str(wanted))
    dropped += [str(s) for s in requested.launch - allowed.launch]
    dropped += sorted(requested.named - allowed.named)
    return ScopeSet(
        frozenset(resources),
        requested.launch & allowed.launch,
        requested.named & allowed.named,
        tuple([*requested.ignored, *dropped]),
    )


def _intersection(a: ResourceScope, b: ResourceScope) -> ResourceScope | None:
    if a.context != b.context:
        return None
    if a.resource_type == "*":
        resource_type = b.resource_type
    elif b.resource_type in ("*", a.resource_type):
        resource_type = a.resource_type
    else:
        return None
    letters = "".join(i for i in INTERACTIONS if i in a.interactions and i in b.interactions)
    if not letters:
        return None
    return ResourceScope(a.context, resource_type, letters, make_query([*a.query, *b.query]))
