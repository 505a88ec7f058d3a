"""The shipped topics' content tests: what makes an Observation an emergency (fhir_server/subscriptions/shipped_topics.py)."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.subscriptions import shipped_topics, topics
from tests import factories


def _flagged(code: str, system: str | None = shipped_topics.INTERPRETATION) -> dict[str, Any]:
    obs = factories.observation("A", value=70)
    obs["interpretation"] = [{"coding": [{"code": code, **({"system": system} if system else {})}]}]
    return obs


@pytest.mark.parametrize(
    ("resource", "emergency"),
    [
        (factories.critical_observation("A", value=190), True),
        (factories.critical_observation("A", value=20), True),
        (factories.critical_observation("A", value=120), False),  # bounds are inside
        (factories.critical_observation("A", value=40), False),
        (factories.observation("A", value=500), False),  # no range, no interpretation
        (_flagged("HH"), True),
        (_flagged("LL"), True),
        (_flagged("AA"), True),
        (_flagged("AA", None), True),
        (_flagged("H"), False),  # high, not critical
        (_flagged("HH", "http://example.org/other"), False),
        ({**factories.critical_observation("A", value=190), "status": "entered-in-error"}, False),
    ],
)
def test_emergency(resource: dict[str, Any], emergency: bool) -> None:
    assert shipped_topics.emergency(resource) is emergency


def test_ranges_in_other_units_or_several_ranges() -> None:
    obs = factories.critical_observation("A", value=190)
    obs["referenceRange"][0]["high"]["code"] = "/h"  # another unit: that bound is not compared
    assert not shipped_topics.emergency(obs)
    obs = factories.critical_observation("A", value=150)
    obs["referenceRange"].append({"low": {"value": 100}, "high": {"value": 160}})  # inside one of them
    assert not shipped_topics.emergency(obs)


def test_a_component_outside_its_range() -> None:
    obs = factories.observation("A", value=70)
    obs["component"] = [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "valueQuantity": {"value": 210, "unit": "mm[Hg]"},
            "referenceRange": [{"high": {"value": 140, "unit": "mm[Hg]"}}],
        }
    ]
    assert shipped_topics.emergency(obs)


def test_the_registry() -> None:
    assert topics.find(factories.EMERGENCY_TOPIC) is shipped_topics.EMERGENCY
    assert topics.find(f"{factories.NEW_RESULT_TOPIC}|1.0") is shipped_topics.NEW_RESULT
    assert topics.find("urn:nothing") is None
    assert shipped_topics.NEW_RESULT.fires("Observation", "patch")
    assert not shipped_topics.EMERGENCY.fires("Observation", "delete")
    with pytest.raises(ValueError):
        topics.register(shipped_topics.EMERGENCY)
    with pytest.raises(ValueError):
        topics.register(
            topics.Topic("urn:x", "x", "x", (topics.Trigger("Observation", frozenset({"read"})),))
        )
