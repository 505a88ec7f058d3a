"""Field-by-field checks of ingest output against expected Observations (https://hl7.org/fhir/R4/observation-vitalsigns.html)."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from ingest.report import IngestResult
from tests.ingest.fixtures import Expected

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def validate_with_r4b(result: IngestResult) -> int:
    """Validate every bundle and every resource in it with the R4B models; return the resource count."""
    n = 0
    for bundle in result.bundles:
        get_fhir_model_class("Bundle").model_validate(bundle)
        for entry in bundle["entry"]:
            resource = entry["resource"]
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
            n += 1
    return n


def observation_entries(result: IngestResult) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(bundle, entry) of every Observation, in order."""
    return [
        (b, e) for b in result.bundles for e in b["entry"] if e["resource"]["resourceType"] == "Observation"
    ]


def assert_observations(result: IngestResult, expected: list[Expected], patient: str) -> None:
    """The Observations are exactly ``expected``, in order, checked field by field."""
    got = observation_entries(result)
    codes = [e["resource"]["code"]["coding"][0]["code"] for _, e in got]
    assert codes == [x.code for x in expected], f"codes {codes}"
    for (bundle, entry), want in zip(got, expected, strict=True):
        obs = entry["resource"]
        label = f"{want.code}@{want.start}"
        coding = obs["code"]["coding"][0]
        assert coding["system"] == LOINC, label
        assert coding["display"], label
        assert obs["status"] == "final", label
        assert obs["subject"] == {"reference": patient}, label
        cat = obs["category"][0]["coding"][0]
        assert (cat["system"], cat["code"]) == (CATEGORY, want.category), label
        if want.profile:
            assert obs["meta"]["profile"] == [want.profile], label
        else:
            assert "meta" not in obs, label
        if want.end is None:
            assert obs["effectiveDateTime"] == want.start, label
            assert "effectivePeriod" not in obs, label
        else:
            assert obs["effectivePeriod"] == {"start": want.start, "end": want.end}, label
            assert "effectiveDateTime" not in obs, label
        if want.components:
            assert "valueQuantity" not in obs, label
            comps = [
                (c["code"]["coding"][0]["code"], c["valueQuantity"]["value"], c["valueQuantity"]["code"])
                for c in obs["component"]
            ]
            assert comps == list(want.components), label
            for c in obs["component"]:
                assert c["valueQuantity"]["system"] == UCUM, label
        else:
            q = obs["valueQuantity"]
            assert q["value"] == want.value, f"{label}: value {q['value']!r}"
            assert type(q["value"]) in (int, float), label
            assert q["code"] == want.unit, f"{label}: unit {q['code']!r}"
            assert q["system"] == UCUM, label
            assert q["unit"], label
        ident = obs["identifier"][0]
        assert ident["system"] == "urn:fhir-server:ingest", label
        assert entry["request"] == {
            "method": "POST",
            "url": "Observation",
            "ifNoneExist": f"identifier=urn:fhir-server:ingest|{ident['value']}",
        }, label
        assert entry["fullUrl"].startswith("urn:uuid:"), label
        if "device" in obs:
            ref = obs["device"]["reference"]
            devices = [e for e in bundle["entry"] if e["fullUrl"] == ref]
            assert len(devices) == 1 and devices[0]["resource"]["resourceType"] == "Device", label


def identifiers(result: IngestResult) -> list[str]:
    """Every conditional-create query of every entry, in order."""
    return [e["request"].get("ifNoneExist", "") for b in result.bundles for e in b["entry"]]
