"""ValueSet definitions and their expansion (https://hl7.org/fhir/R4/valueset.html#expansion).

The compose rules (https://hl7.org/fhir/R4/valueset.html#compositions): each include selects the
concepts of its system (listed, filtered, or all of them) that are also in every value set it
imports; the value set is the union of its includes minus the union of its excludes.

Refused with 422 (`Unprocessable`), naming the value set and the reason: a filter or a whole-system
include over a code system the server does not have in full (LOINC, SNOMED CT, UCUM ...), an
unsupported filter, a value set that imports itself. Listed concepts of systems the server does not
have are expanded as listed. An unknown value set url is a 404 (`NotFound`). A version given on an
include for a code system of which the server has another version is served from the version it has,
and the expansion names the version used (`used-codesystem`).

Value sets the server ships come from terminology/data (scripts/gen_terminology.py); others
(stored on the server as resources) are found through a `Resolver`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from fhir_server.errors import FhirError, Invalid, NotFound, Unprocessable

from . import codesystems, filters
from .codesystems import CodeSystem

Resolver = Callable[[str, str | None], Mapping[str, Any] | None]
"""(canonical url, version or None) -> a ValueSet resource with a compose, or None when unknown."""

IMPLICIT = "?fhir_vs"
MAX_DEPTH = 32


@dataclass(frozen=True, slots=True)
class Contains:
    """One code of an expansion (ValueSet.expansion.contains)."""

    system: str | None
    code: str
    display: str | None = None
    version: str | None = None
    abstract: bool = False
    inactive: bool = False

    @property
    def key(self) -> tuple[str | None, str]:
        return self.system, self.code


@dataclass(frozen=True)
class Expansion:
    """The codes of a value set, in definition order, and the code system versions used."""

    url: str | None
    version: str | None
    contains: tuple[Contains, ...]
    used_systems: tuple[str, ...] = ()
    definition: Mapping[str, Any] = field(default_factory=dict)

    def find(self, system: str | None, code: str) -> Contains | None:
        """The expansion's entry for (system, code); any system when `system` is None."""
        for c in self.contains:
            if c.code == code and (system is None or c.system == system):
                return c
        return None


def split_canonical(canonical: str) -> tuple[str, str | None]:
    """`url|version` -> (url, version); a plain url has no version."""
    url, bar, version = canonical.partition("|")
    return url, (version or None) if bar else None


@cache
def _shipped() -> dict[str, dict[str, Any]]:
    return {v["url"]: v for v in codesystems.data()["valueSets"]}


def _implicit(url: str) -> dict[str, Any] | None:
    """`[system]?fhir_vs` (all codes) and `[system]?fhir_vs=isa/[code]` of a shipped code system."""
    system, _, query = url.partition(IMPLICIT)
    if codesystems.get(system) is None:
        return None
    include: dict[str, Any] = {"system": system}
    if query.startswith("=isa/"):
        include["filter"] = [{"property": "concept", "op": "is-a", "value": query[5:]}]
    elif query:
        return None
    return {"url": url, "status": "active", "compose": {"include": [include]}}


def shipped(url: str, version: str | None = None) -> dict[str, Any] | None:
    """The definition of a value set the server ships (url, version, compose ...), or None."""
    found = _shipped().get(url) or (_implicit(url) if IMPLICIT in url else None)
    if found is None or (version is not None and found.get("version") != version):
        return None
    return found


def urls() -> list[str]:
    """Canonical urls of every shipped value set."""
    return sorted(_shipped())


class _Expander:
    def __init__(self, resolve: Resolver | None) -> None:
        self.resolve = resolve
        self.used: dict[str, str] = {}
        self.stack: list[str] = []

    def definition(self, canonical: str) -> Mapping[str, Any]:
        url, version = split_canonical(canonical)
        found: Mapping[str, Any] | None = shipped(url, version)
        if found is None and self.resolve is not None:
            found = self.resolve(url, version)
        if found is None:
            which = f"{url} version {version}" if version else url
            raise NotFound(f"ValueSet {which} is not known to this server", expression=canonical)
        return found

    def value_set(self, vs: Mapping[str, Any]) -> dict[tuple[str | None, str], Contains]:
        name = str(vs.get("url") or vs.get("id") or "(no url)")
        if name in self.stack:
            raise Unprocessable(f"ValueSet {name} includes itself (through {' -> '.join(self.stack)})", name)
        if len(self.stack) >= MAX_DEPTH:
            raise Unprocessable(f"ValueSet {name}: value sets are nested too deep", expression=name)
        compose = vs.get("compose")
        if not isinstance(compose, Mapping):
            raise Unprocessable(f"ValueSet {name} has no compose (definition) to expand", expression=name)
        self.stack.append(name)
        try:
            members: dict[tuple[str | None, str], Contains] = {}
            for part in _parts(compose, "include", name):
                for c in self.part(part, name):
                    members.setdefault(c.key, c)
            for part in _parts(compose, "exclude", name):
                for c in self.part(part, name):
                    members.pop(c.key, None)
            if compose.get("inactive") is False:
                members = {k: c for k, c in members.items() if not c.inactive}
            return members
        finally:
            self.stack.pop()

    def part(self, part: Mapping[str, Any], name: str) -> Iterable[Contains]:
        """The concepts one include / exclude selects."""
        system = part.get("system")
        imports = part.get("valueSet") or []
        if not isinstance(imports, list) or not all(isinstance(u, str) for u in imports):
            raise Invalid(f"ValueSet {name}: compose valueSet must be a list of canonical urls", name)
        if system is not None and not isinstance(system, str):
            raise Invalid(f"ValueSet {name}: compose system must be a uri", expression=name)
        if system is None and not imports:
            raise Invalid(f"ValueSet {name}: an include needs a system or a valueSet", expression=name)
        imported = [self.value_set(self.definition(u)) for u in imports]
        if system is None:
            first, *rest = imported
            return [c for k, c in first.items() if all(k in r for r in rest)]
        selected = self.from_system(str(system), part, name)
        return [c for c in selected if all(c.key in r for r in imported)]

    def from_system(self, system: str, part: Mapping[str, Any], name: str) -> list[Contains]:
        cs = codesystems.get(system)
        listed = _listed_part(part, "concept", name)
        wanted = part.get("version")
        if cs is not None:
            self.used.setdefault(system, f"{system}|{cs.version}" if cs.version else system)
        version = cs.version if cs is not None else (wanted if isinstance(wanted, str) else None)
        if listed:
            return [self.listed(cs, system, version, c, name) for c in listed if isinstance(c, Mapping)]
        if cs is None or not cs.complete:
            why = "is not known to" if cs is None else f"is not available in full (content: {cs.content}) on"
            how = f"codes of code system {system} by filter" if part.get("filter") else f"all of {system}"
            raise Unprocessable(
                f"ValueSet {name} cannot be expanded: it includes {how}, a code system that {why} this server",
                expression=name,
            )
        codes: set[str] | None = None
        for f in _listed_part(part, "filter", name):
            if not isinstance(f, Mapping):
                raise Invalid(f"ValueSet {name}: a filter must be an object", expression=name)
            hits = filters.select(cs, f)
            codes = hits if codes is None else codes & hits
        return [
            _contains(cs, c.code)
            for c in cs.concepts.values()
            if codes is None or c.code in codes  # definition order
        ]

    def listed(
        self, cs: CodeSystem | None, system: str, version: str | None, item: Mapping[str, Any], name: str
    ) -> Contains:
        code = item.get("code")
        if not isinstance(code, str) or not code:
            raise Invalid(f"ValueSet {name}: a listed concept of {system} has no code", expression=name)
        concept = cs.find(code) if cs is not None else None
        if concept is not None and cs is not None:
            return _contains(cs, concept.code, item.get("display"))
        display = item.get("display")
        return Contains(system, code, display if isinstance(display, str) else None, version)


def _listed_part(part: Mapping[str, Any], key: str, name: str) -> list[Any]:
    """An include's `concept` or `filter` list (absent is empty; any other shape is refused)."""
    value = part.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise Invalid(f"ValueSet {name}: compose include {key} must be a list", expression=name)
    return value


def _parts(compose: Mapping[str, Any], key: str, name: str) -> list[Mapping[str, Any]]:
    parts = compose.get(key) or []
    if not isinstance(parts, list) or not all(isinstance(p, Mapping) for p in parts):
        raise Invalid(f"ValueSet {name}: compose.{key} must be a list of objects", expression=name)
    return parts


def _contains(cs: CodeSystem, code: str, display: Any = None) -> Contains:
    concept = cs.concepts[code]
    shown = display if isinstance(display, str) and display else concept.display or None
    return Contains(cs.url, code, shown, cs.version, concept.abstract, concept.inactive)


def expand(value_set: Mapping[str, Any], resolve: Resolver | None = None) -> Expansion:
    """Expand a ValueSet definition (a resource or a shipped definition with a compose)."""
    expander = _Expander(resolve)
    try:
        members = expander.value_set(value_set)
    except FhirError as exc:
        name = str(value_set.get("url") or value_set.get("id") or "")
        if not name or exc.message.startswith(f"ValueSet {name}"):
            raise
        kind = Unprocessable if isinstance(exc, NotFound) else type(exc)  # the outer one is known
        raise kind(f"ValueSet {name} cannot be expanded: {exc.message}", expression=name) from None
    return Expansion(
        url=value_set.get("url"),
        version=value_set.get("version"),
        contains=tuple(members.values()),
        used_systems=tuple(expander.used.values()),
        definition=value_set,
    )


def expand_url(canonical: str, version: str | None = None, resolve: Resolver | None = None) -> Expansion:
    """Expand the value set with this canonical url (`url` or `url|version`; `version` wins)."""
    url, given = split_canonical(canonical)
    wanted = version or given
    definition = _Expander(resolve).definition(f"{url}|{wanted}" if wanted else url)
    return expand(definition, resolve)
