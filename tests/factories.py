"""Resource factories shared by the tests: small, valid R4 resources of the core types."""

from __future__ import annotations

from typing import Any


def patient(family: str = "Smith", given: str = "Anna", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "name": [{"family": family, "given": [given]}],
        "gender": "female",
        "birthDate": "1970-05-04",
        **extra,
    }


def observation(
    patient_id: str | None = None, code: str = "8867-4", value: float = 72, **extra: Any
) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "effectiveDateTime": "2024-03-05T10:00:00Z",
        "valueQuantity": {
            "value": value,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }
    if patient_id:
        obs["subject"] = {"reference": f"Patient/{patient_id}"}
    obs.update(extra)
    return obs


def transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def post_entry(resource: dict[str, Any], full_url: str | None = None, **request: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], **request},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def encounter(patient_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": f"Patient/{patient_id}"},
        **extra,
    }


def fhirpath_patch_setting(body: dict[str, Any]) -> dict[str, Any]:
    """A FHIRPath Patch that sets each top-level element of `body` (delete if present, then add)."""
    rtype = body["resourceType"]
    operations = []
    for key, value in body.items():
        if key in ("resourceType", "id", "meta"):
            continue
        values = value if isinstance(value, list) else [value]
        operations.append(_fhirpath_op("delete", f"{rtype}.{key}") if not isinstance(value, list) else None)
        for item in values:
            operations.append(_fhirpath_op("add", rtype, name=key, value=item))
    return {"resourceType": "Parameters", "parameter": [op for op in operations if op is not None]}


def _fhirpath_op(kind: str, path: str, **parts: Any) -> dict[str, Any]:
    found = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    if "name" in parts:
        found.append({"name": "name", "valueString": parts["name"]})
    if "value" in parts:
        value = parts["value"]
        found.append(_fhirpath_value(value))
    return {"name": "operation", "part": found}


def _fhirpath_value(value: Any, name: str = "value") -> dict[str, Any]:
    """A FHIRPath Patch value part: primitives as value[x], objects as parts."""
    if isinstance(value, bool):
        return {"name": name, "valueBoolean": value}
    if isinstance(value, str):
        return {"name": name, "valueString": value}
    if isinstance(value, int | float):
        return {"name": name, "valueDecimal": value}
    parts = []
    for key, inner in value.items():
        for item in inner if isinstance(inner, list) else [inner]:
            parts.append(_fhirpath_value(item, key))
    return {"name": name, "part": parts}


def privacy_consent(patient_id: str, *deny: dict[str, Any], status: str = "active") -> dict[str, Any]:
    """A patient-privacy Consent (https://hl7.org/fhir/R4/consent.html) permitting everything but `deny` provisions."""
    return {
        "resourceType": "Consent",
        "status": status,
        "scope": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "policyRule": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]
        },
        "provision": {"type": "permit", "provision": [{"type": "deny", **d} for d in deny]},
    }


def lab_report(patient_id: str, *results: str) -> dict[str, Any]:
    """A laboratory DiagnosticReport (category v2-0074 LAB) about the patient, with its results."""
    return {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "result": [{"reference": f"Observation/{r}"} for r in results],
    }


BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
EMERGENCY_TOPIC = "urn:fhir-server:subscription-topic:emergency-observation"
NEW_RESULT_TOPIC = "urn:fhir-server:subscription-topic:new-result"


def topic_subscription(
    topic: str,
    endpoint: str | None,
    *filters: str,
    content: str | None = "full-resource",
    heartbeat: int | None = None,
    channel: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A topic-based Subscription (Subscriptions Backport IG): filters 'name=value' or 'Type?name=value'."""
    chan: dict[str, Any] = channel or {"type": "rest-hook", "endpoint": endpoint}
    chan = {**chan, "payload": "application/fhir+json"}
    if content is not None:
        chan["_payload"] = {
            "extension": [{"url": f"{BACKPORT}/backport-payload-content", "valueCode": content}]
        }
    if heartbeat is not None:
        chan["extension"] = [{"url": f"{BACKPORT}/backport-heartbeat-period", "valueUnsignedInt": heartbeat}]
    sub: dict[str, Any] = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "topic test",
        "criteria": topic,
        "channel": chan,
    }
    if filters:
        sub["_criteria"] = {
            "extension": [{"url": f"{BACKPORT}/backport-filter-criteria", "valueString": f} for f in filters]
        }
    return sub


def critical_observation(
    patient_id: str, value: float = 190, low: float = 40, high: float = 120
) -> dict[str, Any]:
    """A heart rate with a reference range (outside it unless low <= value <= high)."""
    obs = observation(patient_id, value=value)
    obs["referenceRange"] = [
        {
            "low": {"value": low, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
            "high": {"value": high, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
        }
    ]
    return obs


def lab_observation(patient_id: str, code: str = "2345-7", value: float = 5.5) -> dict[str, Any]:
    """A laboratory-category Observation about the patient."""
    obs = observation(patient_id, code=code, value=value)
    obs["category"][0]["coding"][0]["code"] = "laboratory"
    return obs


def audit_event(audit_id: str, patient_id: str = "p1") -> dict[str, Any]:
    """An AuditEvent of a read, shaped as the audit trail records it (audit/balp.py)."""
    from fhir_server.audit import balp

    return {
        **balp.audit_event(
            type_=balp.REST,
            subtype=balp.restful_subtype("read"),
            action="R",
            started_us=1_764_824_400_000_000,
            ended_us=1_764_824_400_001_000,
            status=200,
            who=None,
            base="http://example.org/fhir",
            entities=[balp.patient_entity(patient_id)],
            description="HTTP 200 GET read Patient",
        ),
        "id": audit_id,
    }
