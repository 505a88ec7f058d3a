"""Subsumption over the hierarchy of shipped code systems (https://hl7.org/fhir/R4/codesystem.html#hierarchy).

`related` serves the token search modifiers :below / :above (https://hl7.org/fhir/R4/search.html#modifiers):
the concept and those it subsumes, or those that subsume it. `outcome` answers `CodeSystem/$subsumes`
(https://hl7.org/fhir/R4/codesystem-operation-subsumes.html) with a code of
https://hl7.org/fhir/R4/codesystem-concept-subsumption-outcome.html.
"""

from __future__ import annotations

from typing import Literal

from fhir_server.errors import Invalid, Unprocessable

from . import codesystems
from .codesystems import CodeSystem

Direction = Literal["below", "above"]
Outcome = Literal["equivalent", "subsumes", "subsumed-by", "not-subsumed"]


def hierarchy(system: str) -> CodeSystem:
    """The shipped, complete code system `system`; 422 naming it when the server does not have it."""
    found = codesystems.get(system)
    if found is None:
        raise Unprocessable(
            f"Code system {system} is not known to this server, so its hierarchy is not either",
            expression=system,
        )
    if not found.complete:
        raise Unprocessable(
            f"Code system {system} is not available in full on this server (content: {found.content})",
            expression=system,
        )
    return found


def _concept_code(cs: CodeSystem, code: str) -> str:
    concept = cs.find(code)
    if concept is None:
        raise Invalid(f"Code '{code}' is not in code system {cs.url}", expression=code)
    return concept.code


def related(system: str | None, code: str, direction: str) -> list[tuple[str | None, str]]:
    """(system, code) of the concept and those below or above it in its code system.

    Without a system, every shipped code system defining the code is used (400 when none does).
    """
    if direction not in ("below", "above"):
        raise Invalid(f"Unknown subsumption direction '{direction}'", expression=direction)
    if system is None:
        found = codesystems.containing(code)
        if not found:
            raise Invalid(f"Code '{code}' is not in any code system this server has; give its system")
        systems = found
    else:
        systems = [hierarchy(system)]
    out: list[tuple[str | None, str]] = []
    for cs in systems:
        own = _concept_code(cs, code)
        others = cs.descendants(own) if direction == "below" else cs.ancestors(own)
        out.append((cs.url, own))
        out.extend((cs.url, c) for c in others)
    return out


def outcome(system: str, code_a: str, code_b: str) -> Outcome:
    """How concept A relates to concept B in `system` (both must be defined there)."""
    cs = hierarchy(system)
    a, b = _concept_code(cs, code_a), _concept_code(cs, code_b)
    if a == b:
        return "equivalent"
    if a in cs.ancestors(b):
        return "subsumes"
    if b in cs.ancestors(a):
        return "subsumed-by"
    return "not-subsumed"
