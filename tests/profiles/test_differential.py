"""Snapshots generated from differentials (profiles/differential.py) against HL7's own snapshots."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_server import spec_package
from profiles import definitions, differential, stored, validator
from profiles.snapshot import compile_snapshot

BASE = "http://hl7.org/fhir/StructureDefinition/"
VITALS = [
    "vitalsigns",
    "heartrate",
    "bp",
    "bodyweight",
    "bodytemp",
    "oxygensat",
    "resprate",
    "bmi",
    "bodyheight",
]


def differential_only(name: str) -> dict[str, Any]:
    sd = copy.deepcopy(dict(definitions.find(BASE + name) or {}))
    del sd["snapshot"]
    return sd


def summary(sd: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    out = {}
    for e in sd["snapshot"]["element"]:
        fixed = {k: v for k, v in e.items() if k.startswith(("fixed", "pattern"))}
        out[e["id"]] = (
            e.get("min"),
            e.get("max"),
            e.get("sliceName"),
            [t.get("code") for t in e.get("type", ())],
            fixed,
            (e.get("slicing") or {}).get("discriminator"),
        )
    return out


@pytest.mark.parametrize("name", [n for n in VITALS if n != "bp"])
def test_the_vital_sign_profiles_come_out_as_hl7_made_them(name: str) -> None:
    made = differential.with_snapshot(differential_only(name))
    real = dict(definitions.find(BASE + name) or {})
    assert list(summary(made)) == list(summary(real))  # the same elements, in the same order
    assert summary(made) == summary(real)


def test_bp_differs_only_where_hl7s_snapshot_is_inconsistent() -> None:
    """HL7's bp snapshot makes component valueQuantity a type slice at the top level but not in the
    components (it unrolls `component:SystolicBP.value[x]` itself); we make both slices. The
    validation outcome is the same (test below)."""
    made, real = (
        summary(sd)
        for sd in (
            differential.with_snapshot(differential_only("bp")),
            dict(definitions.find(BASE + "bp") or {}),
        )
    )
    extra = set(made) - set(real)
    assert extra and all(":valueQuantity" in i and i.startswith("Observation.component:") for i in extra)
    missing = set(real) - set(made)
    assert all(i.startswith("Observation.component:") and ".value[x]." in i for i in missing)


def observations() -> list[dict[str, Any]]:
    return [r for _, r in spec_package.resources("Observation-")]


@pytest.mark.parametrize("name", ["heartrate", "bp", "vitalsigns"])
def test_validation_with_a_generated_snapshot_equals_hl7s(name: str) -> None:
    made = compile_snapshot(differential.with_snapshot(differential_only(name)))
    real = compile_snapshot(dict(definitions.find(BASE + name) or {}))
    url = "http://example.org/p"
    tried = 0
    for obs in observations():
        for variant in (obs, {**obs, "valueQuantity": {"value": 1, "unit": "x", "code": "bpm"}}):
            claim = {**variant, "meta": {"profile": [url]}}
            ours = validator.issues(claim, stored=lambda _u, d=made: d)  # type: ignore[misc]
            theirs = validator.issues(claim, stored=lambda _u, d=real: d)  # type: ignore[misc]
            assert ours == theirs, obs.get("id")
            tried += 1
    assert tried > 50


def test_what_cannot_be_expanded_says_why() -> None:
    sd = differential_only("heartrate")
    sd["differential"]["element"].append({"id": "Observation.nope", "path": "Observation.nope"})
    with pytest.raises(differential.NoSnapshot, match=r"Observation\.nope"):
        differential.with_snapshot(sd)
    sd = differential_only("heartrate")
    sd["baseDefinition"] = "http://example.org/not-loaded"
    with pytest.raises(differential.NoSnapshot, match="not-loaded"):
        differential.with_snapshot(sd)
    sd = differential_only("heartrate")
    del sd["differential"]
    with pytest.raises(differential.NoSnapshot, match="neither"):
        differential.with_snapshot(sd)


def test_a_stored_definition_is_compiled_once_per_version() -> None:
    sd = differential_only("heartrate")
    sd["url"] = "http://example.org/once"
    first = stored.definition("once/1/t1", sd)
    assert stored.definition("once/1/t1", sd) is first
    assert stored.definition("once/2/t2", sd) is not first
    sd["derivation"] = "specialization"
    with pytest.raises(stored.Unusable, match="not a profile"):
        stored.definition("once/3/t3", sd)


SEGMENTS = [
    "Observation",
    "code",
    "coding",
    "system",
    "value[x]",
    "valueQuantity",
    "component",
    "nope",
    "",
    "x:y",
]


@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "id": st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=5).map(".".join),
                "path": st.sampled_from(["Observation", "Observation.code", "Observation.x"]),
            },
            optional={
                "sliceName": st.text(max_size=3),
                "min": st.integers(0, 2),
                "max": st.sampled_from(["0", "1", "*"]),
                "fixedCode": st.text(max_size=3),
                "type": st.just([{"code": "Quantity"}]),
                "slicing": st.just({"discriminator": [{"type": "value", "path": "code"}], "rules": "open"}),
            },
        ),
        min_size=1,
        max_size=6,
    )
)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_any_differential_gives_a_profile_or_says_why(elements: list[dict[str, Any]]) -> None:
    """Whatever a stored differential holds, using it is a compiled profile or `Unusable` (never a crash)."""
    sd = differential_only("heartrate")
    sd["differential"] = {"element": elements}
    with contextlib.suppress(differential.NoSnapshot):
        compile_snapshot(differential.with_snapshot(sd))
    found = stored._compile(sd)
    assert isinstance(found, stored.Unusable) or found.url == sd["url"]
