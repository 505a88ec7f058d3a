"""StructureDefinitions stored on the server, used as profiles (https://hl7.org/fhir/R4/structuredefinition.html).

A stored StructureDefinition is found by the caller (`fhir_server/interactions/stored_profiles.py`:
the search `StructureDefinition?url=...&version=...` in the writing transaction) and compiled here
once per stored version: the cache key names the stored version (id, versionId, lastUpdated), so an update or a delete made by any
process takes effect at the next lookup, and nothing process-local has to be invalidated.

Rules:
- a url held by a loaded package (HL7's base definitions and profiles, installed packages) always
  resolves to the package: `profiles.snapshot.compiled` is asked first, and a write of a
  StructureDefinition with such a url is refused (422) unless it is the package's own definition
  (`check_write`), so a stored copy of HL7's definitions is fine and a changed one never applies;
- a definition with only a differential gets its snapshot from its base (`profiles/differential.py`)
  when it constrains elements the base already has; otherwise using it as a profile is an error
  naming why (`Unusable`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from fhir_server.errors import Issue, Unprocessable

from . import definitions, differential
from .snapshot import Definition, compile_snapshot

_SIZE = 256
_lock = threading.Lock()
_cache: OrderedDict[str, Definition | Unusable] = OrderedDict()


class Unusable(Exception):
    """A stored StructureDefinition that cannot serve as a profile, and why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def cached(key: str) -> Definition | None:
    """The compiled profile of the stored version `key`, when compiled already (`Unusable` raised)."""
    with _lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
    if isinstance(found, Unusable):
        raise found
    return found


def definition(key: str, sd: Mapping[str, Any]) -> Definition:
    """The compiled profile of one stored version, named by `key` (compiled once); `Unusable`
    when it cannot serve as a profile."""
    with _lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
    if found is None:
        found = _compile(sd)
        with _lock:
            _cache[key] = found
            while len(_cache) > _SIZE:
                _cache.popitem(last=False)
    if isinstance(found, Unusable):
        raise found
    return found


def _compile(sd: Mapping[str, Any]) -> Definition | Unusable:
    url = sd.get("url")
    if sd.get("kind") != "resource" or sd.get("derivation") != "constraint":
        return Unusable(f"The StructureDefinition {url} is not a profile of a resource (kind, derivation)")
    try:
        full = dict(sd) if isinstance(sd.get("snapshot"), Mapping) else differential.with_snapshot(sd)
        return compile_snapshot(full)
    except differential.NoSnapshot as exc:
        return Unusable(
            f"The StructureDefinition {url} has no snapshot and the server cannot make one: {exc}"
        )
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        return Unusable(f"The snapshot of the StructureDefinition {url} cannot be compiled: {exc!r}")


def packaged(url: str) -> Mapping[str, Any] | None:
    """The definition a loaded package holds for `url` (version ignored), if any."""
    return definitions.find_packaged(url)


def check_write(sd: Mapping[str, Any], where: str = "StructureDefinition") -> None:
    """Refuse (422) a StructureDefinition that would shadow a package's url, or whose snapshot
    cannot be compiled; the package's own definition (same content apart from id, meta, text) is
    accepted."""
    url = sd.get("url")
    if not isinstance(url, str):
        return
    own = packaged(url)
    if own is not None:
        if _comparable(own) != _comparable(sd):
            message = (
                f"The url {url} belongs to a loaded package (HL7's definitions or an installed package); "
                "a stored StructureDefinition may not redefine it: give it a url of your own"
            )
            raise Unprocessable(message, issues=[Issue(message, "business-rule", (f"{where}.url",))])
        return
    if isinstance(sd.get("snapshot"), Mapping) and sd.get("derivation") == "constraint":
        found = _compile(sd)
        if isinstance(found, Unusable):
            raise Unprocessable(
                found.message, issues=[Issue(found.message, "processing", (f"{where}.snapshot",))]
            )


def _comparable(sd: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in sd.items() if k not in ("id", "meta", "text")}
