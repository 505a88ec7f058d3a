"""The one module that imports fhir.resources (R4B models): resource types and validation.

Structure and datatype rules: https://hl7.org/fhir/R4/json.html and https://hl7.org/fhir/R4/datatypes.html.
We declare fhirVersion 4.0.1 and serve every R4 resource type (https://hl7.org/fhir/R4/resourcelist.html):
the ones R4B kept, whose models can still check R4 content (`check_models`, optional), and the
R4-only ones (`R4_ONLY`), which the write path validates from HL7's R4 StructureDefinitions alone
(`fhir_server/validation.py`); the R4B-only types (`R4B_ONLY`) are not R4 and not served.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from . import narrative, spec_package
from .errors import Invalid, Issue

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
# Types that are not stored as ordinary resources.
_NOT_STORED = {"Parameters", "Resource", "DomainResource"}
# R4 (4.0.1) resource types that R4B dropped: no R4B model (https://hl7.org/fhir/R4B/diff.html).
R4_ONLY = frozenset(
    {
        "EffectEvidenceSynthesis",
        "MedicinalProduct",
        "MedicinalProductAuthorization",
        "MedicinalProductContraindication",
        "MedicinalProductIndication",
        "MedicinalProductIngredient",
        "MedicinalProductInteraction",
        "MedicinalProductManufactured",
        "MedicinalProductPackaged",
        "MedicinalProductPharmaceutical",
        "MedicinalProductUndesirableEffect",
        "RiskEvidenceSynthesis",
        "SubstanceNucleicAcid",
        "SubstancePolymer",
        "SubstanceProtein",
        "SubstanceReferenceInformation",
        "SubstanceSourceMaterial",
        "SubstanceSpecification",
    }
)
# R4B resource types that R4 does not have: their models exist, but a 4.0.1 server does not serve them.
R4B_ONLY = frozenset(
    {
        "AdministrableProductDefinition",
        "Citation",
        "ClinicalUseDefinition",
        "EvidenceReport",
        "Ingredient",
        "ManufacturedItemDefinition",
        "MedicinalProductDefinition",
        "NutritionProduct",
        "PackagedProductDefinition",
        "RegulatedAuthorization",
        "SubscriptionStatus",
        "SubscriptionTopic",
        "SubstanceDefinition",
    }
)


@cache
def resource_types() -> frozenset[str]:
    """Every R4 resource type we store: the codes of HL7's R4 `resource-types` code system
    (http://hl7.org/fhir/R4/codesystem-resource-types.html), read from its package, without importing
    a model (importing every R4B model to list them took 1.3 s and 80 MiB)."""
    path = spec_package.ensure() / "CodeSystem-resource-types.json"
    codes = frozenset(c["code"] for c in orjson.loads(path.read_bytes())["concept"])
    return codes - _NOT_STORED


def has_r4b_model(name: str) -> bool:
    """True when the R4B models can check resources of type `name` (an R4 type R4B kept)."""
    return name in resource_types() and name not in R4_ONLY


def is_resource_type(name: str) -> bool:
    """True when `name` is an R4 resource type we can store."""
    return name in resource_types()


@cache
def summary_elements(resource_type: str) -> frozenset[str]:
    """JSON names of the elements marked isSummary (https://hl7.org/fhir/R4/search.html#summary)."""
    if resource_type in R4_ONLY:
        return frozenset(n for e in _top_elements(resource_type) if e.get("isSummary") for n in _names(e))
    cls = get_fhir_model_class(resource_type)
    return frozenset(
        (f.alias or name)
        for name, f in cls.model_fields.items()
        if isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get("summary_element_property")
    )


@cache
def mandatory_elements(resource_type: str) -> frozenset[str]:
    """JSON names of elements with a minimum cardinality of 1."""
    if resource_type in R4_ONLY:
        return frozenset(n for e in _top_elements(resource_type) if e.get("min", 0) > 0 for n in _names(e))
    cls = get_fhir_model_class(resource_type)
    out = set()
    for name, f in cls.model_fields.items():
        extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
        if f.is_required() or extra.get("element_required"):
            out.add(f.alias or name)
    return frozenset(out)


def _top_elements(resource_type: str) -> list[dict[str, Any]]:
    """The elements directly below the root of an R4 base definition (from HL7's package)."""
    path = spec_package.ensure() / f"StructureDefinition-{resource_type}.json"
    elements = orjson.loads(path.read_bytes())["snapshot"]["element"]
    return [e for e in elements if e["path"].count(".") == 1]


def _names(element: dict[str, Any]) -> list[str]:
    """JSON names of an element: one per type of a choice element (value[x]: valueQuantity ...)."""
    last = element["path"].rsplit(".", 1)[1]
    if not last.endswith("[x]"):
        return [last]
    return [last[:-3] + t["code"][:1].upper() + t["code"][1:] for t in element.get("type", ())]


def validate(resource: Any, *, location: str = "", parsed_from: bytes | None = None) -> None:
    """Check a resource's structure and datatypes with the R4B models; raise Invalid listing every
    problem with its FHIRPath.

    `location` is the FHIRPath of the resource itself when it sits inside something else
    (e.g. `Bundle.entry[3].resource`); by default paths start at the resource type. `parsed_from` is
    the JSON text the resource was parsed from, when at hand: it spares the control character walk
    when the text cannot produce one (`_may_hold_control_character`). The write path validates with
    `fhir_server.validation` (HL7's StructureDefinitions), which calls `check_envelope` and, when
    configured, `check_models`.
    """
    check_envelope(resource, location=location, parsed_from=parsed_from)
    check_models(resource, location=location)
    narrative.check(resource, location or resource["resourceType"])  # xhtml rules the models do not check


def check_envelope(resource: Any, *, location: str = "", parsed_from: bytes | None = None) -> None:
    """The checks before any definition applies: a JSON object of a type we serve, a valid id, and
    no control characters in strings (https://hl7.org/fhir/R4/datatypes.html#string). The strings
    are walked only when the JSON text (`parsed_from`, else orjson's) may hold one."""
    if not isinstance(resource, dict):
        raise Invalid("The body must be a JSON object holding a FHIR resource", location or "$this")
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        raise Invalid("The resource has no resourceType", location or "$this")
    if not is_resource_type(rtype):
        raise Invalid(
            f"Unknown resource type '{rtype}'", f"{location}resourceType" if location else "resourceType"
        )
    rid = resource.get("id")
    if rid is not None and (not isinstance(rid, str) or not ID_RE.match(rid)):
        raise Invalid(f"Invalid id '{rid}': 1-64 characters of A-Z a-z 0-9 - .", f"{location or rtype}.id")
    bad = None
    if _may_hold_control_character(parsed_from if parsed_from is not None else _json_text(resource)):
        bad = _control_character(resource, location or rtype)
    if bad is not None:
        raise Invalid("Strings may not contain control characters other than tab, CR and LF", bad)


def check_models(resource: dict[str, Any], *, location: str = "") -> None:
    """Validate with the R4B model of the resource's type (after `check_envelope`); an R4-only type
    has no model: nothing to check here."""
    rtype = resource["resourceType"]
    if not has_r4b_model(rtype):
        return
    try:
        _validate_model(rtype, resource)
    except ValidationError as exc:
        issues = [
            Issue(
                _message(err),
                "invalid" if err["type"] != "missing" else "required",
                (_fhirpath(location or rtype, err["loc"]),),
            )
            for err in exc.errors()
        ]
        raise Invalid(issues[0].message, issues=issues) from None
    except (ValueError, TypeError) as exc:  # model-level validators raising plain errors
        raise Invalid(str(exc), location or rtype) from None


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _may_hold_control_character(text: bytes) -> bool:
    """False when JSON text cannot decode to a string with a character below U+0020 (RFC 8259 section 7:
    such characters appear in strings only escaped, as \\u00XX, \\b, \\f, \\n, \\r or \\t; n, r
    and t are allowed). True is only a maybe (e.g. an escaped backslash before a b)."""
    # each escape starts with a backslash: one fast scan clears most texts
    return b"\\" in text and (b"\\u00" in text or b"\\b" in text or b"\\f" in text)


def _json_text(resource: dict[str, Any]) -> bytes:
    """The resource as JSON text, which holds every string `_control_character` looks at (orjson
    writes str, dict and list subclasses too), each character below U+0020 escaped as RFC 8259
    says; b"\\u00" (a maybe) when orjson cannot serialise it."""
    try:
        return orjson.dumps(resource)
    except (TypeError, orjson.JSONEncodeError):
        return b"\\u00"


def _control_character(node: Any, path: str) -> str | None:
    """FHIRPath of the first string holding a character below U+0020 other than tab, CR, LF.

    https://hl7.org/fhir/R4/datatypes.html#string: such characters SHALL NOT appear in strings.
    """
    if isinstance(node, str):
        return path if _CONTROL.search(node) else None
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(value, (int, float, bool)) and value is not None:
                found = _control_character(value, f"{path}.{key}")
                if found is not None:
                    return found
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found = _control_character(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def _validate_model(rtype: str, resource: dict[str, Any]) -> None:
    """Validate with the R4B model, tolerating `_value[x]` primitive extensions the models reject."""
    cls = get_fhir_model_class(rtype)
    try:
        cls.model_validate(resource)
    except ValidationError as exc:
        errors = exc.errors()
        if not all(_is_choice_primitive_extension(e) for e in errors):
            raise
        # The R4B models have no field for primitive extensions of choice elements (e.g. an
        # Extension's `_valueString`), which R4 JSON allows (https://hl7.org/fhir/R4/json.html#primitive):
        # check those as Elements and the rest without them.
        trimmed = _without_choice_primitive_extensions(resource)
        cls.model_validate(trimmed)


def _is_choice_primitive_extension(err: Any) -> bool:
    loc = err.get("loc") or ()
    last = loc[-1] if loc else ""
    return err.get("type") == "extra_forbidden" and isinstance(last, str) and last.startswith("_value")


def _without_choice_primitive_extensions(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key.startswith("_value") and key[6:7].isupper():
                get_fhir_model_class("Element").model_validate(value) if isinstance(value, dict) else None
                continue
            out[key] = _without_choice_primitive_extensions(value)
        return out
    if isinstance(node, list):
        return [_without_choice_primitive_extensions(v) for v in node]
    return node


def _message(err: Any) -> str:
    msg = str(err.get("msg", "invalid"))
    if err.get("type") == "extra_forbidden":
        return "Unknown element"
    return msg


def _fhirpath(root: str, loc: tuple[Any, ...]) -> str:
    """Turn a pydantic error location into a FHIRPath like Observation.code.coding[0].system."""
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and (part.isidentifier() or part.startswith("_")):
            path += f".{part}"
        # validator names such as 'function-after[...]' carry no location
    return path
