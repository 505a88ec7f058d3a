"""The topics this server ships: emergency Observations and new results for a patient (https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/topics.html).

- `EMERGENCY`: an Observation created or updated whose value (or a component's value) is outside
  its reference range, or whose interpretation is critical (HH, LL, AA);
- `NEW_RESULT`: a DiagnosticReport, or a laboratory-category Observation, created, updated or deleted.

Both may be filtered by `patient`, `code` and `category` (the search parameters of those names).
"""

from __future__ import annotations

from typing import Any

from .topics import Filter, Topic, Trigger, register

INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
CRITICAL = frozenset({"HH", "LL", "AA"})
LABORATORY = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"


def _filters(*types: str) -> tuple[Filter, ...]:
    return tuple(
        Filter(name, {t: name for t in types}, description)
        for name, description in (
            ("patient", "the patient the resource is about (a Patient id or reference)"),
            ("code", "the resource's code (system|code, code, or :in a value set)"),
            ("category", "the resource's category"),
        )
    )


def _critical_interpretation(resource: dict[str, Any]) -> bool:
    for concept in resource.get("interpretation") or []:
        for coding in (concept or {}).get("coding") or [] if isinstance(concept, dict) else []:
            if (
                isinstance(coding, dict)
                and coding.get("code") in CRITICAL
                and coding.get("system") in (None, INTERPRETATION)
            ):
                return True
    return False


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _unit(quantity: dict[str, Any]) -> Any:
    return quantity.get("code") or quantity.get("unit")


def _outside(value: Any, ranges: Any) -> bool:
    """A Quantity outside every reference range it can be compared with (and there is one)."""
    if not isinstance(value, dict) or not isinstance(ranges, list):
        return False
    number = _number(value.get("value"))
    if number is None:
        return False
    compared = inside = 0
    for rng in ranges:
        if not isinstance(rng, dict):
            continue
        bounds = [(rng.get("low"), 1), (rng.get("high"), -1)]
        usable = [
            (b, sign)
            for b, sign in bounds
            if isinstance(b, dict)
            and _number(b.get("value")) is not None
            and (_unit(b) is None or _unit(value) is None or _unit(b) == _unit(value))
        ]
        if not usable:
            continue
        compared += 1
        if all((number - float(b["value"])) * sign >= 0 for b, sign in usable):
            inside += 1
    return compared > 0 and inside == 0


def emergency(resource: dict[str, Any]) -> bool:
    """Critical interpretation, or a value outside its reference range (the Observation's or a component's)."""
    if resource.get("status") == "entered-in-error":
        return False
    if _critical_interpretation(resource) or _outside(
        resource.get("valueQuantity"), resource.get("referenceRange")
    ):
        return True
    for component in resource.get("component") or []:
        if isinstance(component, dict) and (
            _critical_interpretation(component)
            or _outside(component.get("valueQuantity"), component.get("referenceRange"))
        ):
            return True
    return False


EMERGENCY = register(
    Topic(
        url="urn:fhir-server:subscription-topic:emergency-observation",
        title="Emergency observation",
        description="An Observation whose value is outside its reference range, or whose "
        "interpretation is critical (HH, LL, AA), created or updated.",
        triggers=(
            Trigger(
                "Observation",
                frozenset({"create", "update"}),
                test=emergency,
                description="value outside referenceRange, or interpretation HH, LL or AA",
            ),
        ),
        filters=_filters("Observation"),
    )
)

NEW_RESULT = register(
    Topic(
        url="urn:fhir-server:subscription-topic:new-result",
        title="New result",
        description="A DiagnosticReport, or a laboratory Observation, created, updated or deleted.",
        triggers=(
            Trigger("DiagnosticReport", frozenset({"create", "update", "delete"}), description="any report"),
            Trigger(
                "Observation",
                frozenset({"create", "update", "delete"}),
                query=(("category", LABORATORY),),
                description="category laboratory",
            ),
        ),
        filters=_filters("DiagnosticReport", "Observation"),
    )
)
