"""balp.py's shortcuts give what they stand for (https://profiles.ihe.net/ITI/BALP/): instants as instant.py formats them."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_server import instant
from fhir_server.audit import balp


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 253_402_300_799_999_999), st.integers(0, 3_000_000))
def test_timestamps_are_the_fhir_instants(us: int, later: int) -> None:
    assert balp.timestamp(us) == instant.to_fhir(us)
    assert balp.timestamp(us + later) == instant.to_fhir(us + later)  # the second kept, or not


def _event(who: balp.Who, started_us: int) -> dict[str, Any]:
    return balp.audit_event(
        type_=balp.REST,
        subtype=None,
        action="R",
        started_us=started_us,
        ended_us=started_us + 1,
        status=200,
        who=who,
        base="http://x",
        entities=[],
    )


def test_the_agents_and_source_of_one_caller_are_built_once_and_as_agents_builds_them() -> None:
    who = balp.Who("app", "user-1", "Practitioner/7", None)
    first = _event(who, 1)
    second = _event(balp.Who("app", "user-1", "Practitioner/7", None), 3)
    assert first["agent"] == balp.agents(who, "http://x") and first["source"] == balp.source("http://x")
    assert second["agent"] is first["agent"]
