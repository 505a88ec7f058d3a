"""What every write is validated against: HL7's R4 StructureDefinitions (https://hl7.org/fhir/R4/validation.html).

`validate()` runs the envelope checks (`model.check_envelope`: type, id, control characters), then
the compiled base definition of the resource's type and the profiles it claims in `meta.profile`
(`profiles/`): cardinality, types, primitive formats, fixed/pattern values, required bindings,
reference targets, slicing, invariants and the narrative rules, every error at once. With
`r4b_models` the R4B models check the resource as well (the check before the validator existed;
the R4-only types, which have no R4B model, are checked by the validator alone). A profile no
loaded package holds is looked up with `stored` (StructureDefinitions stored on the server), and
a StructureDefinition written must not redefine a package's url (`profiles.stored.check_write`, 422).
"""

from __future__ import annotations

from typing import Any

from profiles import stored as stored_profiles
from profiles import validator

from . import model
from .errors import Invalid


def validate(
    resource: Any,
    *,
    location: str = "",
    parsed_from: bytes | None = None,
    unknown_profiles: str = "ignore",
    r4b_models: bool = False,
    stored: validator.StoredProfiles | None = None,
) -> None:
    """Raise `Invalid` (400) listing every error of `resource`; `location` is its FHIRPath when it
    sits inside something else (a Bundle entry)."""
    model.check_envelope(resource, location=location, parsed_from=parsed_from)
    errors = [
        issue
        for issue in validator.issues(
            resource, location=location, unknown_profiles=unknown_profiles, stored=stored
        )
        if issue.severity == "error"
    ]
    if errors:
        raise Invalid(errors[0].message, issues=errors)
    if resource["resourceType"] == "StructureDefinition":
        stored_profiles.check_write(resource, location or "StructureDefinition")
    if r4b_models and model.has_r4b_model(resource["resourceType"]):
        model.check_models(resource, location=location)
