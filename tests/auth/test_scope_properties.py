"""Property tests of the SMART scope parser (https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html)."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from fhir_server.auth.scopes import (
    CONTEXTS,
    INTERACTION_LETTERS,
    INTERACTIONS,
    V1_VERBS,
    Context,
    Interaction,
    ResourceScope,
    ScopeNotGranted,
    ScopeSet,
    grantable,
    make_query,
    narrow,
    parse,
)

from .scope_strategies import TYPES, allows, contexts, pairs, resource_types, scope_sets


def _facts_of(*sets: ScopeSet) -> list[frozenset[tuple[str, str]]]:
    """Resource descriptions worth checking: none, each scope's own query, all queries together."""
    queries = [frozenset(s.query) for scopes in sets for s in scopes.resources]
    return [frozenset(), frozenset().union(*queries), *queries]


def _checks(
    *sets: ScopeSet,
) -> itertools.product[tuple[Context, str, Interaction, frozenset[tuple[str, str]]]]:
    return itertools.product(CONTEXTS, ["*", *TYPES], INTERACTION_LETTERS, _facts_of(*sets))


@given(scope_sets)
def test_parsing_the_string_form_gives_back_the_same_scopes(scopes: ScopeSet) -> None:
    again = parse(scopes.to_string())
    assert again == scopes
    assert again.ignored == ()


@given(st.text())
def test_any_text_parses_without_error_and_each_token_is_understood_or_ignored(text: str) -> None:
    scopes = parse(text)
    for token in text.split():
        assert (token in scopes.ignored) != (parse(token).ignored == ())


@given(contexts, resource_types, st.sampled_from(list(V1_VERBS)))
def test_v1_scopes_grant_exactly_what_their_v2_equivalent_grants(
    context: str, resource_type: str, verb: str
) -> None:
    v1 = parse(f"{context}/{resource_type}.{verb}")
    v2 = parse(f"{context}/{resource_type}.{V1_VERBS[verb]}")
    assert {s.as_v2() for s in v1.resources} == v2.resources
    for c, t, i in itertools.product(CONTEXTS, ["*", *TYPES], INTERACTION_LETTERS):
        assert bool(v1.permits(c, t, i)) == bool(v2.permits(c, t, i))


@st.composite
def _subsets(draw: st.DrawFn, granted: ScopeSet) -> ScopeSet:
    """A scope set narrower than `granted`: fewer scopes, fewer letters, more restrictions."""
    resources = set()
    for scope in draw(st.sets(st.sampled_from(sorted(granted.resources)))) if granted.resources else []:
        letters = draw(st.sets(st.sampled_from(scope.interactions), min_size=1))
        more = draw(st.lists(pairs, max_size=2))
        kept = "".join(i for i in INTERACTIONS if i in letters)
        if scope.v1 and kept == scope.interactions and not more:
            resources.add(scope)
        else:
            resources.add(
                ResourceScope(scope.context, scope.resource_type, kept, make_query([*scope.query, *more]))
            )
    launch = draw(st.sets(st.sampled_from(sorted(granted.launch, key=str)))) if granted.launch else set()
    named = draw(st.sets(st.sampled_from(sorted(granted.named)))) if granted.named else set()
    return ScopeSet(frozenset(resources), frozenset(launch), frozenset(named))


@given(st.data(), scope_sets)
def test_narrowing_to_a_subset_succeeds(data: st.DataObject, granted: ScopeSet) -> None:
    requested = data.draw(_subsets(granted))
    assert narrow(granted, requested) == requested


@given(st.data(), scope_sets)
def test_narrowing_never_widens(data: st.DataObject, granted: ScopeSet) -> None:
    requested = data.draw(st.one_of(scope_sets, _subsets(granted)))
    try:
        result = narrow(granted, requested)
    except ScopeNotGranted:
        return
    assert result.named <= granted.named and result.launch <= granted.launch
    for context, resource_type, interaction, facts in _checks(granted, requested):
        if allows(result, context, resource_type, interaction, facts):
            assert allows(granted, context, resource_type, interaction, facts)


@given(scope_sets, scope_sets)
def test_grantable_stays_within_both_the_request_and_the_policy(
    requested: ScopeSet, allowed: ScopeSet
) -> None:
    result = grantable(requested, allowed)
    assert result.named == requested.named & allowed.named
    for context, resource_type, interaction, facts in _checks(requested, allowed):
        if allows(result, context, resource_type, interaction, facts):
            assert allows(requested, context, resource_type, interaction, facts)
            assert allows(allowed, context, resource_type, interaction, facts)


@given(scope_sets)
def test_a_request_within_the_policy_is_granted_whole(scopes: ScopeSet) -> None:
    assert grantable(scopes, scopes) == scopes
