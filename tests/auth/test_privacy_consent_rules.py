"""Consent provisions parsed into deny rules (https://hl7.org/fhir/R4/consent.html): any JSON shape is
either understood or ignored, never an exception on the request path (Hypothesis)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from fhir_server.auth import privacy_consent
from fhir_server.auth.principal import Principal
from tests import factories

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
KEYS = st.sampled_from(
    ["type", "actor", "class", "code", "securityLabel", "period", "provision", "reference"]
)
PROVISION = st.recursive(
    st.dictionaries(KEYS, JSON, max_size=5),
    lambda inner: st.dictionaries(KEYS, inner | st.lists(inner, max_size=3) | JSON, max_size=5),
    max_leaves=10,
)


@given(provision=PROVISION | JSON, patient=JSON)
def test_any_provision_shape_is_parsed_or_ignored(provision: Any, patient: Any) -> None:
    consent = factories.privacy_consent("A") | {"id": "c", "provision": provision}
    if patient is not None:
        consent["patient"] = patient
    rules = privacy_consent.rules_of(consent)
    who = Principal(client_id="app", kind="user", fhir_user="Practitioner/X")
    for rule in rules:
        rule.applies_to(who, 0)
        for withheld in rule.withheld:
            assert withheld.compartment.startswith("Patient/")


def test_codes_and_labels_combine_as_or_within_and_and_across() -> None:
    deny = {
        "actor": [{"reference": {"reference": "Practitioner/X"}}],
        "code": [{"coding": [{"system": "s", "code": "a"}, {"system": "s", "code": "b"}]}],
        "securityLabel": [{"system": "l", "code": "R"}],
    }
    (rule,) = privacy_consent.rules_of(factories.privacy_consent("A", deny) | {"id": "c"})
    assert {w.query for w in rule.withheld} == {
        (("category", "s|a"), ("_security", "l|R")),
        (("category", "s|b"), ("_security", "l|R")),
    }
    assert all(w.types is None and w.compartment == "Patient/A" for w in rule.withheld)


def test_a_deny_without_actor_spares_the_patient_only() -> None:
    (rule,) = privacy_consent.rules_of(factories.privacy_consent("A", {}) | {"id": "c"})
    me = Principal(client_id="app", kind="patient", fhir_user="Patient/A", patient="A")
    anyone = Principal(client_id="app", kind="user", fhir_user="Practitioner/Z")
    assert not rule.applies_to(me, 0) and rule.applies_to(anyone, 0)
