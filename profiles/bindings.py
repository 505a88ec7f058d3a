"""Terminology bindings checked with `terminology/` (https://hl7.org/fhir/R4/terminologies.html#strength).

A required binding's value set is expanded once (cached) into a set of (system, code); a value
set the server cannot expand (all of SNOMED CT, a grammar such as BCP-47 or UCUM) is not checked.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fhir_server.errors import FhirError
from terminology.service import service


@lru_cache(maxsize=2048)
def members(canonical: str) -> tuple[frozenset[tuple[str | None, str]], frozenset[str]] | None:
    """(system, code) pairs and bare codes of a value set, or None when it cannot be expanded here."""
    try:
        expansion = service().expansion(canonical)
    except FhirError:
        return None
    except Exception:
        return None
    pairs = frozenset(c.key for c in expansion.contains)
    return pairs, frozenset(code for _s, code in pairs)


def problem(type_code: str, value: Any, canonical: str) -> str | None:
    """Why `value` (a code, Coding or CodeableConcept) is not in the value set, or None when it is
    (or the value set cannot be checked, or the value carries no code to check)."""
    found = members(canonical)
    if found is None:
        return None
    pairs, codes = found
    vs = canonical.split("|", 1)[0]
    if type_code == "code":
        if isinstance(value, str) and value not in codes:
            return f"The code '{value}' is not in the value set {vs}"
        return None
    if type_code == "Coding":
        codings = [value] if isinstance(value, dict) else []
    elif type_code == "CodeableConcept" and isinstance(value, dict):
        listed = value.get("coding")
        codings = [c for c in listed if isinstance(c, dict)] if isinstance(listed, list) else []
    else:
        return None
    coded = [
        c
        for c in codings
        if isinstance(c.get("code"), str) and isinstance(c.get("system"), (str, type(None)))
    ]
    if not coded:
        if type_code == "CodeableConcept" and not codings:
            return None  # text only (or nothing to check): a missing element is reported elsewhere
        return f"No code from the value set {vs}" if type_code == "CodeableConcept" else None
    if any((c.get("system"), c["code"]) in pairs for c in coded):
        return None
    shown = ", ".join(f"{c.get('system') or ''}|{c['code']}" for c in coded)
    return f"None of the codes ({shown}) is in the value set {vs}"
