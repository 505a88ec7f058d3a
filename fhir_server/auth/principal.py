"""Who is calling and what its scopes let it do (https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html#scopes-for-requesting-clinical-data).

`decide()` is the one pure access decision. It maps a FHIR interaction to the SMART permission it
needs (c r u d s), finds the granted scopes in the contexts this principal may use, and returns an
`Access`: the alternative `Grant`s under which the request is allowed (any one suffices). Each grant
may carry a patient compartment (`Patient/<id>`) and a granular query (`category=...`). The
enforcement layer restricts searches to `grant_1 OR grant_2 ...` and checks read or written resources
against the same conditions.

Policy beyond the scopes (SMART: scopes are always limited by underlying permissions):

* `patient/` scopes apply only when a patient is in context, and only to that patient's compartment.
* `user/` scopes: a user whose `fhirUser` is a Patient sees that patient's compartment; another user
  of a patient-facing app (`kind="patient"`, e.g. a RelatedPerson) sees the in-context patient's
  compartment; a clinician (`kind="user"`) is not restricted further here.
* `system/` scopes apply only to Backend Services clients (`kind="system"`), within their policy.
* `anonymous-dev` is the explicitly configured development mode: everything is allowed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, cast, get_args

from .scopes import INTERACTIONS, Context, Interaction, Query, ResourceScope, ScopeSet, make_query

Kind = Literal["patient", "user", "system", "anonymous-dev"]
FhirInteraction = Literal[
    "read", "vread", "search", "history", "create", "update", "patch", "delete", "operation"
]

KINDS: tuple[Kind, ...] = get_args(Kind)
# Types no client may create, update, patch or delete, whatever its scopes (https://hl7.org/fhir/R4/auditevent.html:
# the audit trail is recorded by the server; a forged or erased entry would defeat it).
SERVER_WRITTEN = frozenset({"AuditEvent"})
FHIR_USER_TYPES = frozenset({"Patient", "Practitioner", "PractitionerRole", "RelatedPerson", "Person"})

# The SMART permission each interaction needs (history: instance level 'r', type/system level 's').
# Update also covers update-as-create (upsert); conditional interactions also need 's'.
NEEDS: dict[str, Interaction] = {
    "read": "r",
    "vread": "r",
    "search": "s",
    "create": "c",
    "update": "u",
    "patch": "u",
    "delete": "d",
}
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@dataclass(frozen=True)
class Withheld:
    """A deny provision of a patient's privacy Consent that applies to this caller
    (auth/privacy_consent.py): resources of `types` (None: every type) in `compartment` that match
    every `query` parameter are withheld from reads and searches, whatever the scopes grant."""

    consent: str  # "Consent/<id>", for the audit trail
    compartment: str  # "Patient/<id>"
    types: frozenset[str] | None = None
    query: Query = ()


@dataclass(frozen=True)
class Principal:
    """The authenticated caller behind a request, as established from its access token."""

    client_id: str
    kind: Kind
    scopes: ScopeSet = field(default_factory=ScopeSet)
    subject: str | None = None  # the user's id at the authorization server
    fhir_user: str | None = None  # "Practitioner/9", "Patient/123", ...
    patient: str | None = None  # launch context: Patient id
    encounter: str | None = None  # launch context: Encounter id
    withheld: tuple[Withheld, ...] = ()  # Consent deny provisions naming this caller

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown principal kind {self.kind!r}")
        if self.fhir_user is not None:
            kind, _, ident = self.fhir_user.partition("/")
            if kind not in FHIR_USER_TYPES or not _ID.fullmatch(ident):
                raise ValueError(f"fhirUser must be <{'|'.join(sorted(FHIR_USER_TYPES))}>/<id>")
        for name in ("patient", "encounter"):
            value = getattr(self, name)
            if value is not None and not _ID.fullmatch(value):
                raise ValueError(f"launch context {name} is not a FHIR id: {value!r}")


@dataclass(frozen=True)
class Grant:
    """One condition under which access is allowed; all its parts must hold."""

    compartment: str | None = None  # "Patient/123": only resources in that patient's compartment
    query: Query = ()  # granular restrictions: the resource must match every param=value

    @property
    def unrestricted(self) -> bool:
        return self.compartment is None and not self.query

    def implies(self, other: Grant) -> bool:
        """Everything `other` allows is also allowed by `self` (self is at most as strict)."""
        return self.compartment in (None, other.compartment) and set(self.query) <= set(other.query)


@dataclass(frozen=True)
class Access:
    """The request is allowed under any one of `grants` (never empty)."""

    needs: str  # the SMART permission letters the interaction needed, e.g. "r" or "rs"
    grants: tuple[Grant, ...]
    scopes: tuple[ResourceScope, ...] = ()  # the scopes that granted it (for audit)
    withheld: tuple[Withheld, ...] = ()  # Consent denies: excluded from what the grants allow

    @property
    def unrestricted(self) -> bool:
        return not self.withheld and any(g.unrestricted for g in self.grants)

    @property
    def compartments(self) -> frozenset[str]:
        """The patient compartments the grants are confined to (empty when one grant is not)."""
        if any(g.compartment is None for g in self.grants):
            return frozenset()
        return frozenset(g.compartment for g in self.grants if g.compartment is not None)


@dataclass(frozen=True)
class Denied:
    """The request is not allowed; `reason` is safe to show (no PHI)."""

    reason: str


def decide(
    principal: Principal,
    interaction: FhirInteraction,
    resource_type: str,
    *,
    instance: bool = False,
    needs: str | None = None,
) -> Access | Denied:
    """May `principal` perform `interaction` on `resource_type`? Pure: scopes and context only.

    `resource_type` is "*" for system-level search or history across all types (only wildcard
    scopes grant that). `instance` marks instance-level history. `needs` is required for
    operations: the permission letters the operation declares (e.g. "rs" for `$everything`).
    Conditional create/update/delete are checked by deciding "search" as well.
    """
    letters = _needed(interaction, instance, needs)
    if isinstance(letters, Denied):
        return letters
    if resource_type in SERVER_WRITTEN and any(letter in "cud" for letter in letters):
        return Denied(f"{resource_type} is written by the server alone (the audit trail, docs/audit.md)")
    withheld = _withheld(principal, resource_type, letters)
    if principal.kind == "anonymous-dev":
        return Access(letters, (Grant(),), withheld=withheld)
    grants: tuple[Grant, ...] = (Grant(),)
    used: list[ResourceScope] = []
    for letter in letters:
        alternatives = _grants_for(principal, resource_type, cast(Interaction, letter))
        if isinstance(alternatives, Denied):
            return alternatives
        used += [scope for scope, _ in alternatives]
        grants = _conjoin(grants, tuple(g for _, g in alternatives))
        if not grants:
            return Denied(f"the granted scopes never allow '{letters}' on {resource_type} together")
    return Access(letters, _simplest(grants), tuple(sorted(set(used))), withheld)


def _withheld(principal: Principal, resource_type: str, letters: str) -> tuple[Withheld, ...]:
    """The Consent denies on what this interaction reads (reads and searches only: a deny withholds
    data, it does not stop writes)."""
    if not principal.withheld or not set(letters) & {"r", "s"}:
        return ()
    return tuple(
        w for w in principal.withheld if resource_type == "*" or w.types is None or resource_type in w.types
    )


def _needed(interaction: str, instance: bool, needs: str | None) -> str | Denied:
    if interaction == "operation":
        if not needs or any(i not in INTERACTIONS for i in needs):
            return Denied("operation does not declare the scope permissions it needs")
        return "".join(i for i in INTERACTIONS if i in needs)
    if interaction == "history":
        return "r" if instance else "s"
    if interaction not in NEEDS:
        return Denied(f"unknown interaction {interaction!r}")
    return NEEDS[interaction]


def _grants_for(
    principal: Principal, resource_type: str, letter: Interaction
) -> list[tuple[ResourceScope, Grant]] | Denied:
    found: list[tuple[ResourceScope, Grant]] = []
    reasons: list[str] = []
    for context in _contexts(principal):
        scopes = principal.scopes.permits(context, resource_type, letter)
        if not scopes:
            continue
        compartment = _compartment(principal, context)
        if isinstance(compartment, Denied):
            reasons.append(compartment.reason)
            continue
        found += [(s, Grant(compartment, s.query)) for s in scopes]
    if found:
        return found
    if reasons:
        return Denied("; ".join(reasons))
    return Denied(f"no granted scope allows '{letter}' on {resource_type}")


def _contexts(principal: Principal) -> tuple[Context, ...]:
    if principal.kind == "system":
        return ("system",)
    return ("patient", "user")


def _compartment(principal: Principal, context: Context) -> str | Denied | None:
    if context == "system":
        return None
    if context == "patient":
        if principal.patient is None:
            return Denied("patient-level scopes need a patient in the launch context")
        return f"Patient/{principal.patient}"
    if principal.fhir_user is not None and principal.fhir_user.startswith("Patient/"):
        return principal.fhir_user
    if principal.kind == "patient":
        if principal.patient is None:
            return Denied("user-level scopes of a patient-facing app need a patient in context")
        return f"Patient/{principal.patient}"
    return None


def _conjoin(left: tuple[Grant, ...], right: tuple[Grant, ...]) -> tuple[Grant, ...]:
    """(l1 OR l2 ...) AND (r1 OR r2 ...), distributed; contradictory compartments drop out."""
    out = []
    for a in left:
        for b in right:
            if a.compartment is not None and b.compartment is not None and a.compartment != b.compartment:
                continue
            out.append(Grant(a.compartment or b.compartment, make_query([*a.query, *b.query])))
    return tuple(out)


def _simplest(grants: tuple[Grant, ...]) -> tuple[Grant, ...]:
    """Drop grants implied by another, so an unrestricted grant stands alone."""
    unique = sorted(
        set(grants), key=lambda g: (len(g.query), g.compartment is not None, g.compartment or "", g.query)
    )
    kept: list[Grant] = []
    for grant in unique:
        if not any(k.implies(grant) for k in kept):
            kept.append(grant)
    return tuple(kept)
