"""Validation of a resource against its base definition and the profiles it claims (https://hl7.org/fhir/R4/validation.html).

`issues(resource, ...)` returns every problem (errors, and warnings when asked) as `Issue`s with a
FHIRPath expression; `check(resource, ...)` raises `Invalid` listing all errors at once. Declared
`meta.profile` claims are validated when the profile is known; an unknown one is validated /
warned about / ignored as the `unknown_profiles` setting says ("error", "warn", "ignore").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fhir_server.errors import Invalid, Issue

from .snapshot import Definition, compiled, for_type
from .stored import Unusable
from .walk import Walk

UNKNOWN_PROFILE_POLICIES = ("error", "warn", "ignore")
# Finds a profile stored on the server by `url[|version]` (profiles/stored.py); None: not stored.
StoredProfiles = Callable[[str], Definition | None]


def issues(
    resource: Any,
    *,
    location: str = "",
    profiles: Iterable[str] = (),
    declared: bool = True,
    warnings: bool = False,
    unknown_profiles: str = "ignore",
    stored: StoredProfiles | None = None,
) -> list[Issue]:
    """Every problem of `resource` against its base definition, `profiles` and (when `declared`)
    its own `meta.profile` claims; a url no loaded package holds is looked up with `stored`."""
    if not isinstance(resource, dict):
        return [
            Issue(
                "The body must be a JSON object holding a FHIR resource", "structure", (location or "$this",)
            )
        ]
    rtype = resource.get("resourceType")
    base = for_type(rtype) if isinstance(rtype, str) and rtype[:1].isupper() else None
    where = location or (rtype if isinstance(rtype, str) else "$this")
    if base is None or base.kind != "resource":
        return [Issue(f"Unknown resource type '{rtype}'", "structure", (f"{where}.resourceType",))]
    walk = Walk(warnings=warnings)
    walk.resource(base, resource, where, None)
    wanted = list(dict.fromkeys(profiles))
    if declared:
        meta = resource.get("meta")
        claims = meta.get("profile") if isinstance(meta, dict) else None
        if isinstance(claims, list):
            wanted += [c for c in claims if isinstance(c, str) and c not in wanted]
    seen = {(i.message, i.expression) for i in walk.issues}
    for url in wanted:
        definition = compiled(url)
        if definition is None and stored is not None:
            try:
                definition = stored(url)
            except Unusable as exc:
                walk.issues.append(Issue(exc.message, "processing", (f"{where}.meta.profile",)))
                continue
        if definition is None:
            if unknown_profiles != "ignore" or url in profiles:
                severity = "error" if unknown_profiles == "error" or url in profiles else "warning"
                if severity == "error" or warnings:
                    walk.issues.append(
                        Issue(f"Unknown profile {url}", "not-supported", (f"{where}.meta.profile",), severity)
                    )
            continue
        if definition.type != rtype:
            walk.error(f"The profile {url} is for {definition.type}, not {rtype}", "structure", where)
            continue
        if definition.url == base.url:
            continue
        extra = Walk(warnings=warnings, profile_pass=True)
        extra.resource(definition, resource, where, None)
        for issue in extra.issues:
            key = (issue.message, issue.expression)
            if key not in seen:
                seen.add(key)
                walk.issues.append(
                    Issue(f"{issue.message} (profile {url})", issue.code, issue.expression, issue.severity)
                )
    return walk.issues


def check(
    resource: Any,
    *,
    location: str = "",
    unknown_profiles: str = "ignore",
    stored: StoredProfiles | None = None,
) -> None:
    """Raise `Invalid` (400) listing every error of `resource`; warnings are dropped."""
    found = [
        i
        for i in issues(resource, location=location, unknown_profiles=unknown_profiles, stored=stored)
        if i.severity == "error"
    ]
    if found:
        raise Invalid(found[0].message, issues=found)
