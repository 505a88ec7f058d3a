"""A patient's privacy Consent withholds data from named actors (https://hl7.org/fhir/R4/consent.html, https://hl7.org/fhir/R4/consent-examples.html).

An active Consent whose scope is `patient-privacy` and whose `patient` is Patient/X says, in its
`deny` provisions (at any depth of `provision.provision`), what is withheld from whom:

* `actor.reference`: a Practitioner, PractitionerRole, RelatedPerson or Patient (matched against the
  caller's `fhirUser`), or a client (`identifier` with system `urn:fhir-server:client-id`, matched
  against the token's client id). A deny naming no actor applies to every caller but the patient.
* what: `class` (resource types, system http://hl7.org/fhir/resource-types), `code` (the data's
  category, e.g. observation-category|laboratory), `securityLabel` (`meta.security`); values of
  one element are alternatives (OR), elements together must all hold (AND). Nothing named: all of
  the patient's compartment.
* `period` (of the provision, or of `provision` at the top): only while it is current.

Everything else is permitted. The rules meeting a caller travel on its `Principal.withheld`, and
`principal.decide` hands the ones of each type to the enforcement (auth/enforce.py), which turns
them into ONE `NOT (...)` condition AND-ed into reads, searches, `_include`s, `$everything` and the
`$export` selection. The Consents are read once per change of any Consent (cached per database).
"""

from __future__ import annotations

import threading
from dataclasses import replace
from itertools import product
from typing import Any

import orjson

from .. import instant
from ..store import conditions
from ..store.sql import Store
from .principal import Principal, Withheld

SCOPE = ("http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy")
RESOURCE_TYPES = "http://hl7.org/fhir/resource-types"
CLIENT_ID = "urn:fhir-server:client-id"
_FHIR_USER_TYPES = ("Practitioner/", "PractitionerRole/", "RelatedPerson/", "Patient/")


class _Rule:
    """One deny provision: who (references / client ids / anyone) and the Withheld rules it makes."""

    def __init__(
        self, actors: set[str], clients: set[str], patient: str, withheld: tuple[Withheld, ...]
    ) -> None:
        self.actors, self.clients, self.patient, self.withheld = actors, clients, patient, withheld
        self.period: tuple[int | None, int | None] = (None, None)

    def applies_to(self, principal: Principal, now_us: int) -> bool:
        start, end = self.period
        if (start is not None and now_us < start) or (end is not None and now_us > end):
            return False
        if not self.actors and not self.clients:  # no actor named: everyone but the patient
            return principal.fhir_user != f"Patient/{self.patient}" and principal.patient != self.patient
        return principal.fhir_user in self.actors or principal.client_id in self.clients


_cache: dict[int, tuple[tuple[int, int], list[_Rule]]] = {}
_lock = threading.Lock()


def attach(store: Store, principal: Principal) -> Principal:
    """The principal with the Consent denies that name it (`withheld`)."""
    rules = _rules(store)
    if not rules:
        return principal
    now = instant.now_us()
    withheld = tuple(w for rule in rules if rule.applies_to(principal, now) for w in rule.withheld)
    return replace(principal, withheld=withheld) if withheld else principal


def _rules(store: Store) -> list[_Rule]:
    with store.read() as tx:
        stamp = conditions.latest_change(tx, "Consent")
        cached = _cache.get(id(store.engine))
        if cached is not None and cached[0] == stamp:
            return cached[1]
        rules = (
            []
            if stamp[1] == 0
            else [
                r
                for s in tx.current_of_type("Consent", limit=100_000)
                for r in rules_of(orjson.loads(s.content))
            ]
        )
    with _lock:
        _cache[id(store.engine)] = (stamp, rules)
    return rules


def rules_of(consent: dict[str, Any]) -> list[_Rule]:
    """The deny rules of one Consent (none unless it is an active patient-privacy Consent)."""
    if consent.get("status") != "active" or not _has_scope(consent.get("scope")):
        return []
    patient = _patient(consent.get("patient"))
    if patient is None:
        return []
    name = f"Consent/{consent.get('id')}"
    out: list[_Rule] = []
    top = consent.get("provision")
    if isinstance(top, dict):
        _walk(top, patient, name, _period(top.get("period")), out)
    return out


def _walk(
    provision: dict[str, Any],
    patient: str,
    name: str,
    period: tuple[int | None, int | None],
    out: list[_Rule],
) -> None:
    own = _period(provision.get("period"))
    period = (own[0] if own[0] is not None else period[0], own[1] if own[1] is not None else period[1])
    if provision.get("type") == "deny":
        rule = _rule(provision, patient, name)
        rule.period = period
        out.append(rule)
    for nested in provision.get("provision") or []:
        if isinstance(nested, dict):
            _walk(nested, patient, name, period, out)


def _rule(provision: dict[str, Any], patient: str, name: str) -> _Rule:
    actors: set[str] = set()
    clients: set[str] = set()
    for actor in provision.get("actor") or []:
        ref = actor.get("reference") if isinstance(actor, dict) else None
        if not isinstance(ref, dict):
            continue
        target = ref.get("reference")
        if isinstance(target, str) and target.startswith(_FHIR_USER_TYPES):
            actors.add(target)
        ident = ref.get("identifier")
        if (
            isinstance(ident, dict)
            and ident.get("system") == CLIENT_ID
            and isinstance(ident.get("value"), str)
        ):
            clients.add(ident["value"])
    if (provision.get("actor") or []) and not actors and not clients:
        actors.add("-")  # actors named that this server cannot match (e.g. an Organization): nobody
    types = frozenset(
        c["code"]
        for c in provision.get("class") or []
        if isinstance(c, dict) and c.get("system") == RESOURCE_TYPES and c.get("code")
    )
    codes: list[tuple[str, str] | None] = [
        ("category", _token(coding))
        for concept in provision.get("code") or []
        if isinstance(concept, dict)
        for coding in concept.get("coding") or []
        if isinstance(coding, dict) and coding.get("code")
    ]
    labels: list[tuple[str, str] | None] = [
        ("_security", _token(c))
        for c in provision.get("securityLabel") or []
        if isinstance(c, dict) and c.get("code")
    ]
    queries = [
        tuple(q for q in combo if q is not None) for combo in product(codes or [None], labels or [None])
    ]
    withheld = tuple(Withheld(name, f"Patient/{patient}", types or None, q) for q in queries)
    return _Rule(actors, clients, patient, withheld)


def _token(coding: dict[str, Any]) -> str:
    system = coding.get("system")
    return f"{system}|{coding['code']}" if system else str(coding["code"])


def _has_scope(scope: Any) -> bool:
    codings = scope.get("coding") if isinstance(scope, dict) else None
    return any(isinstance(c, dict) and (c.get("system"), c.get("code")) == SCOPE for c in codings or [])


def _patient(ref: Any) -> str | None:
    target = ref.get("reference") if isinstance(ref, dict) else None
    if isinstance(target, str) and target.startswith("Patient/") and "/" not in target[8:]:
        return target[8:]
    return None


def _period(period: Any) -> tuple[int | None, int | None]:
    if not isinstance(period, dict):
        return (None, None)
    return (_instant(period.get("start")), _instant(period.get("end")))


def _instant(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return instant.parse(value)
    except ValueError:
        return None
