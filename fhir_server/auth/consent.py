"""What a user may grant an app, and what they granted (https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html).

Pure policy over scope values. The consent page offers the requested scopes this user can grant
in this launch, each with a checkbox; what stays ticked is granted. Policy:

* `system/` scopes are never granted to an app acting for a user (Backend Services only).
* `patient/` scopes and `launch/patient` need a patient in context: a Patient user's own record, the
  EHR launch's patient, or one a clinician picks (so "the EHR SHALL establish a patient in context").
* `launch` only in an EHR launch; `launch/encounter` only when the launch names an encounter.
* `fhirUser` only for a user represented by a FHIR resource.
* `offline_access` wins over `online_access` when both are granted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from .caregiver import is_caregiver
from .launch import LaunchContext
from .scopes import LaunchScope, ResourceScope, ScopeSet, parse
from .users import User

_VERBS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
_NAMED = {
    "openid": "Confirm who you are (OpenID Connect)",
    "fhirUser": "Know which FHIR record represents you",
    "profile": "Know which FHIR record represents you",
    "offline_access": "Keep access after you log out (until you revoke it)",
    "online_access": "Keep access while you remain logged in",
}


class WrongPatient(ValueError):
    """A patient user was launched with another patient's context."""


@dataclass(frozen=True)
class Offer:
    """One scope on the consent page."""

    scope: str
    description: str


def patient_context(user: User, context: LaunchContext) -> LaunchContext:
    """The launch context for this user: a Patient user is always in their own record."""
    own = user.patient_id
    if own is None:
        return context
    if context.patient not in (None, own):
        raise WrongPatient("this launch is for another patient")
    return replace(context, patient=own)


def needs_patient_choice(requested: ScopeSet, user: User, context: LaunchContext) -> bool:
    """A clinician, or a caregiver (auth/caregiver.py: among the people they care for), must pick a
    patient: patient context was asked for and the launch has none."""
    chooses = user.kind == "user" or is_caregiver(user.fhir_user)
    return requested.needs_patient and context.patient is None and chooses


def offers(requested: ScopeSet, user: User, context: LaunchContext, *, ehr_launch: bool) -> list[Offer]:
    """The requested scopes this user may grant here, in a stable order, with descriptions."""
    out: list[Offer] = []
    for scope in sorted(requested.resources):
        if scope.context == "system" or (scope.context == "patient" and context.patient is None):
            continue
        out.append(Offer(str(scope), describe_resource(scope)))
    for launch in sorted(requested.launch, key=str):
        if _launch_allowed(launch, context, ehr_launch):
            out.append(Offer(str(launch), _describe_launch(launch)))
    for name in sorted(requested.named):
        if name == "fhirUser" and user.fhir_user is None:
            continue
        out.append(Offer(name, _NAMED[name]))
    return out


def granted(
    requested: ScopeSet, approved: Iterable[str], user: User, context: LaunchContext, *, ehr_launch: bool
) -> ScopeSet:
    """The scopes granted: offered ones the user left ticked."""
    ticked = set(approved)
    chosen = " ".join(
        o.scope for o in offers(requested, user, context, ehr_launch=ehr_launch) if o.scope in ticked
    )
    scope = parse(chosen)
    if "offline_access" in scope.named and "online_access" in scope.named:
        scope = replace(scope, named=scope.named - {"online_access"})
    return scope


def token_context(scope: ScopeSet, context: LaunchContext, *, ehr_launch: bool) -> LaunchContext:
    """The launch context the token response carries, given what was granted."""
    has_launch = any(launch.context is None for launch in scope.launch)
    patient = context.patient if (scope.needs_patient or has_launch) else None
    encounter = context.encounter if ("encounter" in scope.launch_contexts or has_launch) else None
    extra = context.fhir_context if has_launch else ()
    intent = context.intent if has_launch else None
    banner = context.need_patient_banner if ehr_launch else True
    return LaunchContext(patient, encounter, extra, intent, banner)


def describe_resource(scope: ResourceScope) -> str:
    """A plain-language line for a clinical scope."""
    verbs = [_VERBS[letter] for letter in scope.interactions]
    what = "all kinds of records" if scope.resource_type == "*" else f"{scope.resource_type} records"
    whose = {
        "patient": "of the patient in context",
        "user": "you have access to",
        "system": "on the whole server",
    }[scope.context]
    text = f"{', '.join(verbs).capitalize()} {what} {whose}"
    if scope.query:
        text += " (only where " + " and ".join(f"{name} = {value}" for name, value in scope.query) + ")"
    return text


def _launch_allowed(launch: LaunchScope, context: LaunchContext, ehr_launch: bool) -> bool:
    if launch.context is None:
        return ehr_launch
    if launch.context == "patient":
        return context.patient is not None
    if launch.context == "encounter":
        return context.encounter is not None
    return False


def _describe_launch(launch: LaunchScope) -> str:
    if launch.context is None:
        return "Receive the context this app was launched in"
    return f"Know which {launch.context} is in context"
