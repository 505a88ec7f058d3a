"""Hypothesis strategies for SMART scopes (https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html)."""

from __future__ import annotations

from hypothesis import strategies as st

from fhir_server.auth.scopes import (
    CONTEXTS,
    INTERACTIONS,
    NAMED_SCOPES,
    V1_VERBS,
    Context,
    Interaction,
    LaunchScope,
    ResourceScope,
    ScopeSet,
    make_query,
)

TYPES = ["Observation", "Patient", "Condition", "MedicationRequest"]
PARAMS = ["category", "code", "code:in", "patient.birthdate", "_tag", "value-quantity"]

contexts = st.sampled_from(CONTEXTS)
resource_types = st.sampled_from(["*", *TYPES])
letters = st.sets(st.sampled_from(INTERACTIONS), min_size=1).map(
    lambda chosen: "".join(i for i in INTERACTIONS if i in chosen)
)
values = st.one_of(
    st.sampled_from(
        [
            "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
            "http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
            "http://loinc.org|8867-4",
        ]
    ),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=12),
)
pairs = st.tuples(st.sampled_from(PARAMS), values)
queries = st.lists(pairs, max_size=3).map(make_query)

v2_scopes = st.builds(ResourceScope, contexts, resource_types, letters, queries)
v1_scopes = st.builds(
    lambda c, t, v: ResourceScope(c, t, V1_VERBS[v], (), True),
    contexts,
    resource_types,
    st.sampled_from(list(V1_VERBS)),
)
resource_scopes = st.one_of(v2_scopes, v1_scopes)
launch_scopes = st.one_of(
    st.just(LaunchScope()),
    st.builds(LaunchScope, st.sampled_from(["patient", "encounter", "imagingstudy"])),
    st.builds(LaunchScope, st.just("questionnaire"), values),
)
scope_sets = st.builds(
    ScopeSet,
    st.frozensets(resource_scopes, max_size=5),
    st.frozensets(launch_scopes, max_size=3),
    st.frozensets(st.sampled_from(sorted(NAMED_SCOPES))),
)


def allows(
    scopes: ScopeSet,
    context: Context,
    resource_type: str,
    interaction: Interaction,
    facts: frozenset[tuple[str, str]],
) -> bool:
    """Model of what a scope set lets through: a resource described by `facts` (the param=value
    pairs it matches) is allowed when some permitting scope's query is among its facts."""
    return any(set(s.query) <= facts for s in scopes.permits(context, resource_type, interaction))
