"""The terminology service the server uses: expansion and subsumption, cached (https://hl7.org/fhir/R4/terminology-service.html).

`service()` is the shared instance over what the server ships; `service().with_store(resolve)` adds
the value sets stored on the server (found per request through `resolve`). It implements the
`Terminology` protocol of `fhir_server.search.plan` for the token modifiers :in, :not-in, :above
and :below (https://hl7.org/fhir/R4/search.html#modifiers); there an unknown value set is a 400 and
one that cannot be expanded a 422, both naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from fhir_server.errors import FhirError, Invalid, NotFound

from . import subsumption, valuesets
from .valuesets import Expansion, Resolver

CACHE_SIZE = 512


@lru_cache(maxsize=CACHE_SIZE)
def _shipped_expansion(url: str, version: str | None) -> Expansion:
    return valuesets.expand_url(url, version)


@lru_cache(maxsize=CACHE_SIZE)
def _related(system: str | None, code: str, direction: str) -> tuple[tuple[str | None, str], ...]:
    return tuple(subsumption.related(system, code, direction))


@dataclass(frozen=True)
class TerminologyService:
    """Expansion and subsumption over the shipped terminology, and stored value sets when given."""

    resolve: Resolver | None = None

    def with_store(self, resolve: Resolver) -> TerminologyService:
        """The same service, also finding value sets through `resolve` (e.g. those stored on the server)."""
        return TerminologyService(resolve)

    def expansion(self, canonical: str, version: str | None = None) -> Expansion:
        """The expansion of the value set `canonical` (`url` or `url|version`); 404 when unknown."""
        url, given = valuesets.split_canonical(canonical)
        wanted = version or given
        if valuesets.shipped(url, wanted) is not None:
            try:
                return _shipped_expansion(url, wanted)
            except FhirError:
                if self.resolve is None:
                    raise  # else: it may import value sets stored on the server
        return valuesets.expand_url(url, wanted, self.resolve)

    def expand_definition(self, value_set: Mapping[str, Any]) -> Expansion:
        """The expansion of a ValueSet resource (stored, or sent to an operation)."""
        return valuesets.expand(value_set, self.resolve)

    # ---- the search Terminology protocol ----

    def expand(self, url: str) -> list[tuple[str | None, str]]:
        """(system, code) of every concept of the value set; 400 when unknown, 422 when not expandable."""
        try:
            return [c.key for c in self.expansion(url).contains]
        except NotFound as exc:
            raise Invalid(exc.message, expression=url) from None

    def related(self, system: str | None, code: str, direction: str) -> list[tuple[str | None, str]]:
        """The concept and those it subsumes ("below") or that subsume it ("above")."""
        return list(_related(system, code, direction))


@cache
def service() -> TerminologyService:
    """The shared service over the terminology the server ships."""
    return TerminologyService()
