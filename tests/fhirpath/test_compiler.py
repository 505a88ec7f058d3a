"""FHIRPath (https://hl7.org/fhir/R4/fhirpath.html): the parser and the compiler, against fhirpathpy and per construct."""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from decimal import Decimal
from functools import cache
from typing import Any

import fhirpathpy
import orjson
import pytest
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models
from hypothesis import given
from hypothesis import strategies as st

from fhir_server import spec_package
from fhir_server.fhirpath.compiler import Extractor, compile_expression, reference_type
from fhir_server.fhirpath.syntax import Binary, Call, Literal, Member, Node, TypeOp, Var, parse, render
from fhir_server.search import parameters

# Definitional resources of the package are huge and add nothing the clinical examples do not test.
CONFORMANCE = (
    "StructureDefinition-",
    "ValueSet-",
    "CodeSystem-",
    "SearchParameter-",
    "OperationDefinition-",
    "ConceptMap-",
    "NamingSystem-",
    "Bundle-",
    "CapabilityStatement-",
    "ImplementationGuide-",
    "StructureMap-",
)


def _stub_resolve(references: list[Any]) -> list[Any]:
    """resolve() for fhirpathpy: a stub resource of the type the reference names."""
    out = []
    for ref in references:
        kind = reference_type(ref) if isinstance(ref, dict) else None
        if kind is not None:
            out.append(ResourceNode.create_node({"resourceType": kind}, kind))
    return out


ORACLE_OPTIONS = {"userInvocationTable": {"resolve": {"fn": _stub_resolve, "arity": {0: []}}}}


def oracle_expression(expression: str, resource_type: str) -> str:
    """The expression as fhirpathpy can evaluate it: it does not match `Resource.` against a
    resource, `x as T` on a collection is an error there (R4 expressions use it on collections,
    meaning ofType), and R4 composites name the System type DateTime where FHIR dateTime is meant."""
    if expression.startswith("Resource."):
        expression = resource_type + expression[len("Resource") :]
    expression = re.sub(r"\.as\(([A-Za-z]+)\)", r".ofType(\1)", expression)
    expression = re.sub(r"\(([^()]+?) as ([A-Za-z]+)\)", r"((\1).ofType(\2))", expression)
    return expression.replace("ofType(DateTime)", "ofType(dateTime)")


def _numbers_as_float(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _numbers_as_float(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers_as_float(v) for v in value]
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return float(value)
    return value


def canonical(values: list[Any]) -> set[bytes]:
    """Values as a set of JSON texts (unions deduplicate; fhirpathpy reads decimals as Decimal)."""
    return {orjson.dumps(_numbers_as_float(v), option=orjson.OPT_SORT_KEYS) for v in values if v is not None}


@cache
def examples() -> list[tuple[str, dict[str, Any]]]:
    known = set(parameters.resource_types())
    out = []
    for path, resource in spec_package.resources():
        if path.name.startswith(CONFORMANCE) or resource.get("resourceType") not in known:
            continue
        out.append((path.name, resource))
    return out


def test_every_registry_expression_compiles_without_fallback() -> None:
    fallbacks = [
        (rt, sp.code)
        for rt in parameters.resource_types()
        for sp in parameters.for_type(rt).values()
        if sp.expression and not compile_expression(sp.expression, rt).compiled
    ]
    assert fallbacks == []


def test_compiled_extractors_match_fhirpathpy_on_every_hl7_example() -> None:
    r4 = models["r4"]
    compared = Counter[str]()
    mismatches = []
    for name, resource in examples():
        rt = resource["resourceType"]
        for sp in parameters.for_type(rt).values():
            if not sp.expression:
                continue
            mine = canonical(compile_expression(sp.expression, rt)(resource))
            try:
                theirs = canonical(
                    fhirpathpy.evaluate(
                        resource, oracle_expression(sp.expression, rt), {}, r4, ORACLE_OPTIONS
                    )
                )
            except Exception:
                compared["oracle failed"] += 1
                continue
            compared["compared"] += 1
            compared["non-empty"] += bool(theirs)
            if mine != theirs:
                mismatches.append((name, sp.code, sp.expression, mine, theirs))
    assert mismatches == []
    assert compared["compared"] > 10_000 and compared["non-empty"] > 3_000, compared
    assert compared["oracle failed"] < compared["compared"] / 100, compared


# ---------------------------------------------------------------- constructs

OBS: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "o1",
    "meta": {"tag": [{"system": "s", "code": "t"}]},
    "code": {"coding": [{"system": "http://loinc.org", "code": "1"}, {"code": "2"}]},
    "subject": {"reference": "Patient/p1"},
    "performer": [{"reference": "Practitioner/d1"}, {"reference": "http://x.org/fhir/Patient/p2/_history/3"}],
    "valueQuantity": {"value": 5, "code": "kg"},
    "effectivePeriod": {"start": "2020"},
    "component": [
        {"code": {"text": "a"}, "valueQuantity": {"value": 1}},
        {"code": {"text": "b"}, "valueString": "s"},
    ],
    "extension": [{"url": "u1", "valueString": "e1"}, {"url": "u2", "valueBoolean": True}],
}


def run(expression: str, resource: dict[str, Any] = OBS) -> list[Any]:
    extractor = Extractor(expression, resource["resourceType"])
    assert extractor.compiled, expression
    return extractor(resource)


def test_path_navigation_flattens_lists() -> None:
    assert run("Observation.code.coding.code") == ["1", "2"]


def test_path_on_a_missing_element_is_empty() -> None:
    assert run("Observation.bodySite.coding") == []


def test_leading_type_name_of_another_type_selects_nothing() -> None:
    assert run("Patient.name") == []


def test_resource_prefix_applies_to_every_type() -> None:
    assert run("Resource.meta.tag.code") == ["t"]


def test_union_concatenates_both_sides() -> None:
    assert run("Observation.subject | Observation.performer") == [OBS["subject"], *OBS["performer"]]


def test_choice_element_without_type_reads_every_variant() -> None:
    assert run("Observation.value") == [OBS["valueQuantity"]]
    assert run("Observation.component.value") == [{"value": 1}, "s"]


def test_as_operator_picks_the_typed_choice_key() -> None:
    assert run("(Observation.value as Quantity)") == [OBS["valueQuantity"]]
    assert run("(Observation.value as CodeableConcept)") == []


def test_as_function_and_of_type_pick_the_typed_choice_key() -> None:
    assert run("Observation.effective.as(Period).start") == ["2020"]
    assert run("Observation.component.value.ofType(string)") == ["s"]


def test_typed_reports_the_fhir_type_of_each_element() -> None:
    typed = Extractor("Observation.component.value | Observation.subject", "Observation").typed(OBS)
    assert sorted(t for _v, t in typed) == ["Quantity", "Reference", "string"]


def test_where_resolve_is_checks_the_reference_type() -> None:
    assert run("Observation.performer.where(resolve() is Patient)") == [OBS["performer"][1]]
    assert run("Observation.performer.where(resolve() is Practitioner)") == [OBS["performer"][0]]


def test_reference_type_reads_relative_absolute_and_typed_references() -> None:
    assert reference_type({"reference": "Patient/1/_history/2"}) == "Patient"
    assert reference_type({"reference": "https://h/fhir/Group/9"}) == "Group"
    assert reference_type({"reference": "#c1"}) is None
    assert reference_type({"reference": "urn:uuid:0c3a"}) is None
    assert reference_type({"type": "Device", "identifier": {"value": "x"}}) == "Device"


def test_where_equality_filters_on_a_child() -> None:
    patient = {
        "resourceType": "Patient",
        "telecom": [{"system": "phone", "value": "1"}, {"system": "email", "value": "a@b"}],
    }
    assert run("Patient.telecom.where(system='email')", patient) == [{"system": "email", "value": "a@b"}]


def test_exists_and_not_equal_give_the_deceased_boolean() -> None:
    expression = "Patient.deceased.exists() and Patient.deceased != false"
    assert run(expression, {"resourceType": "Patient"}) == [False]
    assert run(expression, {"resourceType": "Patient", "deceasedBoolean": False}) == [False]
    assert run(expression, {"resourceType": "Patient", "deceasedBoolean": True}) == [True]
    assert run(expression, {"resourceType": "Patient", "deceasedDateTime": "2020"}) == [True]


def test_extension_function_selects_by_url() -> None:
    assert run("Observation.extension('u1').value") == ["e1"]


def test_indexer_takes_one_element() -> None:
    bundle = {
        "resourceType": "Bundle",
        "entry": [{"resource": {"resourceType": "Composition"}}, {"resource": {}}],
    }
    assert run("Bundle.entry[0].resource", bundle) == [{"resourceType": "Composition"}]


def test_percent_resource_reads_the_root_from_a_component_focus() -> None:
    extractor = Extractor("%resource.id | code.text", "Observation", "Observation.component")
    assert [v for values, _t in extractor.typed_on(OBS["component"][0], OBS) for v in values] == ["o1", "a"]


def test_primitive_list_nulls_are_dropped() -> None:
    patient = {"resourceType": "Patient", "name": [{"given": ["A", None, "B"]}]}
    assert run("Patient.name.given", patient) == ["A", "B"]


def test_unsupported_function_falls_back_to_fhirpathpy() -> None:
    extractor = Extractor("Patient.name.given.select($this.upper())", "Patient")
    assert not extractor.compiled
    assert extractor({"resourceType": "Patient", "name": [{"given": ["ab"]}]}) == ["AB"]


# ---------------------------------------------------------------- parser

names = st.sampled_from(["code", "value", "subject", "div", "as", "Patient", "_x1"])
literals = st.one_of(
    st.text(max_size=8).map(Literal),
    st.booleans().map(Literal),
    st.integers(min_value=0, max_value=10**6).map(Literal),
)


def _extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return st.one_of(
        st.builds(Member, children, names),
        st.builds(Call, st.one_of(st.none(), children), names, st.lists(children, max_size=2).map(tuple)),
        st.builds(
            TypeOp, st.sampled_from(["is", "as"]), children, st.sampled_from(["Quantity", "FHIR.string"])
        ),
        st.builds(Binary, st.sampled_from(["|", "=", "!=", "and", "or", "<=", "+"]), children, children),
    )


trees = st.recursive(
    st.one_of(
        literals, st.builds(Member, st.none(), names), st.builds(Var, st.sampled_from(["resource", "$this"]))
    ),
    _extend,
    max_leaves=12,
)


@given(trees)
def test_parse_of_render_gives_back_the_same_tree(tree: Node) -> None:
    assert parse(render(tree)) == tree


@given(st.text(max_size=30))
def test_parse_raises_only_value_error_on_any_text(text: str) -> None:
    with contextlib.suppress(ValueError):
        parse(text)


def test_parse_respects_fhirpath_precedence() -> None:
    assert parse("a | b and c = d") == Binary(
        "and",
        Binary("|", Member(None, "a"), Member(None, "b")),
        Binary("=", Member(None, "c"), Member(None, "d")),
    )
    assert parse("a.b as Quantity | c") == Binary(
        "|", TypeOp("as", Member(Member(None, "a"), "b"), "Quantity"), Member(None, "c")
    )


def test_parse_rejects_unbalanced_parentheses() -> None:
    with pytest.raises(ValueError):
        parse("(Observation.code")
