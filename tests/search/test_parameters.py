"""Search parameter registry (https://hl7.org/fhir/R4/searchparameter-registry.html) and its generator."""

from __future__ import annotations

import importlib.util
import zlib
from pathlib import Path
from types import ModuleType

import pytest
from fhir.resources.R4B import get_fhir_model_class

from fhir_server import model
from fhir_server.fhirpath.compiler import compile_expression
from fhir_server.search import index, parameters
from fhir_server.search.parameters import IDENTIFIER_SUFFIX, OF_TYPE_SUFFIX, Component, param_id

ROOT = Path(__file__).resolve().parents[2]
RESOURCE_CODES = ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source")


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_search_registry", ROOT / "scripts" / "gen_search_registry.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_param_id_is_the_masked_crc32_of_type_dot_code() -> None:
    assert param_id("Observation", "code") == zlib.crc32(b"Observation.code") & 0x7FFFFFFF
    assert 0 <= param_id("Patient", "name") < 2**31


def test_param_ids_do_not_collide_over_the_registry_and_pseudo_codes() -> None:
    seen: dict[int, tuple[str, str]] = {}
    for resource_type in parameters.resource_types():
        for code in parameters.for_type(resource_type):
            for variant in (code, code + IDENTIFIER_SUFFIX, code + OF_TYPE_SUFFIX):
                pid = param_id(resource_type, variant)
                assert pid not in seen, (resource_type, variant, seen.get(pid))
                seen[pid] = (resource_type, variant)
    assert len(seen) > 7_000


def test_search_param_carries_its_own_param_id() -> None:
    sp = parameters.get("Observation", "code")
    assert sp is not None and sp.param_id == param_id("Observation", "code")


def test_get_returns_none_for_unknown_code_or_type() -> None:
    assert parameters.get("Observation", "no-such-code") is None
    assert parameters.get("NoSuchType", "code") is None
    assert dict(parameters.for_type("NoSuchType")) == {}


def test_registry_is_loaded_once_and_shared() -> None:
    assert parameters.for_type("Patient") is parameters.for_type("Patient")


def test_resource_types_are_the_r4_types() -> None:
    types = parameters.resource_types()
    assert {"Patient", "Observation", "Encounter", "Bundle", "Binary"} <= set(types)
    assert {"MedicinalProduct", "SubstanceNucleicAcid", "EffectEvidenceSynthesis"} <= set(types)  # R4 only
    assert "Citation" not in types  # R4B only: not an R4 resource
    for resource_type in set(types) - model.R4_ONLY:
        assert get_fhir_model_class(resource_type).__name__ == resource_type
    assert set(types) == model.resource_types() | {"Parameters"}


def test_r4_only_types_have_their_search_parameters() -> None:
    # R4 defines no others; the server adds its special ones (_text, _content, _list) to every type
    assert set(parameters.for_type("SubstanceNucleicAcid")) == set(RESOURCE_CODES) | set(parameters.SPECIAL)
    assert parameters.for_type("MedicinalProduct")["name"].expression == "MedicinalProduct.name.productName"


@pytest.mark.parametrize("resource_type", ["Patient", "Observation", "Binary", "Bundle"])
def test_every_type_has_the_resource_level_parameters(resource_type: str) -> None:
    codes = parameters.for_type(resource_type)
    assert set(RESOURCE_CODES) <= set(codes)
    assert codes["_tag"].expression == "Resource.meta.tag"


def test_expressions_are_restricted_to_the_base_type() -> None:
    assert (
        parameters.for_type("Observation")["patient"].expression
        == "Observation.subject.where(resolve() is Patient)"
    )
    assert parameters.for_type("Observation")["code"].expression == "Observation.code"
    assert parameters.for_type("MedicationStatement")["code"].expression == (
        "(MedicationStatement.medication as CodeableConcept)"
    )
    assert parameters.for_type("AllergyIntolerance")["code"].expression == (
        "AllergyIntolerance.code | AllergyIntolerance.reaction.substance"
    )


def test_every_expression_part_starts_with_its_type_or_resource() -> None:
    gen = generator()
    for resource_type in parameters.resource_types():
        for sp in parameters.for_type(resource_type).values():
            for part in gen.split_union(sp.expression):
                assert gen.applies_to(part, resource_type), (resource_type, sp.code, part)


def test_relative_expression_gets_the_type_prefixed() -> None:
    assert (
        parameters.for_type("InsurancePlan")["name"].expression == "InsurancePlan.name | InsurancePlan.alias"
    )


def test_split_union_ignores_bars_in_parentheses_and_strings() -> None:
    gen = generator()
    assert gen.split_union("A.b | (A.c | A.d) | A.e.where(x = '|')") == [
        "A.b",
        "(A.c | A.d)",
        "A.e.where(x = '|')",
    ]


def test_reference_parameter_has_targets() -> None:
    assert set(parameters.for_type("Observation")["subject"].targets) >= {
        "Patient",
        "Group",
        "Device",
        "Location",
    }


def test_composite_components_name_their_definitions_code_and_type() -> None:
    sp = parameters.for_type("Observation")["component-code-value-quantity"]
    assert sp.type == "composite" and sp.expression == "Observation.component"
    assert sp.components == (
        Component("component-code", "token", "code"),
        Component("component-value-quantity", "quantity", "value.as(Quantity)"),
    )


def test_document_reference_relationship_components_errata_is_fixed() -> None:
    sp = parameters.for_type("DocumentReference")["relationship"]
    assert sp.components == (
        Component("relatesto", "reference", "target"),
        Component("relation", "token", "code"),
    )


def test_comparators_are_kept() -> None:
    assert "ge" in parameters.for_type("Observation")["date"].comparators


def test_every_composite_component_compiles_on_the_composite_elements() -> None:
    for resource_type in parameters.resource_types():
        for sp in parameters.for_type(resource_type).values():
            if sp.type != "composite":
                continue
            branches = compile_expression(sp.expression, resource_type).branches
            assert branches, (resource_type, sp.code)
            for _fn, focus in branches:
                for component in sp.components:
                    assert compile_expression(component.expression, resource_type, focus).compiled


def test_generation_is_reproducible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = generator()
    monkeypatch.setattr(gen, "DATA", tmp_path)
    gen.main()
    committed = ROOT / "fhir_server" / "search" / "data"
    for name in ("search_parameters.json", "compartment_patient.json", "elements.json"):
        assert (tmp_path / name).read_bytes() == (committed / name).read_bytes(), name


def test_the_audit_trail_has_no_full_text() -> None:
    """AuditEvents are searched by their own parameters; `_content` / `_text` are not offered for
    them (and not indexed), every other DomainResource has both."""
    assert parameters.get("AuditEvent", "_content") is None
    assert parameters.get("AuditEvent", "_text") is None
    assert parameters.get("AuditEvent", "_list") is not None
    assert parameters.get("Observation", "_content") is not None
    rows = index.index_tuples(
        {"resourceType": "AuditEvent", "outcomeDesc": "sentinel words", "text": {"div": "<div>x</div>"}}
    )
    assert "text" not in rows


def _with(field: str) -> dict[tuple[str, str], tuple[str, ...]]:
    """{(type, code): the field} of every parameter whose `field` (parts, joined) is set."""
    return {
        (t, sp.code): getattr(sp, field)
        for t in parameters.resource_types()
        for sp in parameters.for_type(t).values()
        if getattr(sp, field)
    }


def test_union_parameters_are_the_observation_combos_and_cover_their_expressions_exactly() -> None:
    gen = generator()
    found = _with("parts")
    assert found == {
        ("Observation", "combo-code"): ("code", "component-code"),
        ("Observation", "combo-code-value-concept"): ("code-value-concept", "component-code-value-concept"),
        ("Observation", "combo-code-value-quantity"): (
            "code-value-quantity",
            "component-code-value-quantity",
        ),
        ("Observation", "combo-data-absent-reason"): ("component-data-absent-reason", "data-absent-reason"),
        ("Observation", "combo-value-concept"): ("component-value-concept", "value-concept"),
        ("Observation", "combo-value-quantity"): ("component-value-quantity", "value-quantity"),
    }
    for (t, code), parts in found.items():
        sp = parameters.for_type(t)[code]
        theirs = [b for part in parts for b in gen.split_union(parameters.for_type(t)[part].expression)]
        assert sorted(theirs) == sorted(gen.split_union(sp.expression))
        # a part on the resource itself is answered by its components' parameters (joined_ids)
        own = tuple(param_id(t, part) for part in parts if not parameters.for_type(t)[part].joined)
        assert parameters.row_ids(sp, t) == own
        assert parameters.joined_ids(sp, t) == tuple(
            tuple(param_id(t, c) for c in parameters.for_type(t)[part].joined)
            for part in parts
            if parameters.for_type(t)[part].joined
        )
        # the parts are of the union's type and, for composites, have its components
        for part in parts:
            other = parameters.for_type(t)[part]
            assert other.type == sp.type and not other.parts
            assert [(c.type, c.expression) for c in other.components] == [
                (c.type, c.expression) for c in sp.components
            ]


def test_a_composite_over_the_same_elements_with_other_components_is_not_a_union() -> None:
    gen = generator()

    def entry(code: str, expression: str, value: str) -> dict[str, object]:
        components = [
            {"code": "c", "type": "token", "expression": "code"},
            {"code": "v", "type": "quantity", "expression": value},
        ]
        return {"code": code, "type": "composite", "expression": expression, "components": components}

    entries = [
        entry("both", "X | X.part", "value.as(Quantity)"),
        entry("root", "X", "value.as(Quantity)"),
        entry("parts", "X.part", "value.as(SampledData)"),  # another value component
        {"code": "t", "type": "token", "expression": "X.a | X.b"},
        {"code": "a", "type": "token", "expression": "X.a"},
        {"code": "b", "type": "string", "expression": "X.b"},  # another type
    ]
    assert gen.unions(entries) == {}
    entries[2] = entry("parts", "X.part", "value.as(Quantity)")
    entries[5] = {"code": "b", "type": "token", "expression": "X.b"}
    assert gen.unions(entries) == {"both": ("parts", "root"), "t": ("a", "b")}


def test_joined_composites_are_observation_code_value_concept_date_and_quantity() -> None:
    found = _with("joined")
    assert found == {
        ("Observation", "code-value-concept"): ("code", "value-concept"),
        ("Observation", "code-value-date"): ("code", "value-date"),
        ("Observation", "code-value-quantity"): ("code", "value-quantity"),
    }
    for (t, code), joined in found.items():
        sp = parameters.for_type(t)[code]
        assert parameters.row_ids(sp, t) == ()
        assert parameters.joined_ids(sp, t) == (tuple(param_id(t, c) for c in joined),)
        assert [c.code for c in sp.components] == list(joined)
    # `value-string` also reads CodeableConcept.text, which the component `value.as(string)` does not
    assert not parameters.for_type("Observation")["code-value-string"].joined


def test_a_root_composite_is_joined_only_when_each_component_selects_its_parameter_s_indexed_values() -> None:
    gen = generator()

    def composite(expression: str, value: str, value_type: str = "quantity") -> dict[str, object]:
        components = [
            {"code": "c", "type": "token", "expression": "code"},
            {"code": "v", "type": value_type, "expression": value},
        ]
        return {"code": "cv", "type": "composite", "expression": expression, "components": components}

    def entries(cv: dict[str, object], v: str, v_type: str = "quantity") -> list[dict[str, object]]:
        return [
            cv,
            {"code": "c", "type": "token", "expression": "X.code"},
            {"code": "v", "type": v_type, "expression": v},
        ]

    quantity = "(X.value as Quantity) | (X.value as SampledData)"  # SampledData has no quantity rows
    assert gen.root_composites(entries(composite("X", "value.as(Quantity)"), quantity), "X") == {
        "cv": ("c", "v")
    }
    assert gen.root_composites(
        entries(composite("X", "value.as(DateTime)", "date"), "(X.value as dateTime)", "date"), "X"
    ) == {"cv": ("c", "v")}
    # not on the resource itself: one element per component, numbered by grp
    assert gen.root_composites(entries(composite("X.part", "value.as(Quantity)"), quantity), "X") == {}
    # the parameter selects an indexed value the component does not (a Quantity), or the other way round
    assert (
        gen.root_composites(
            entries(composite("X", "value.as(Quantity)"), "(X.value as Quantity) | X.other"), "X"
        )
        == {}
    )
    assert gen.root_composites(entries(composite("X", "value.as(Quantity) | other"), quantity), "X") == {}
    # another type than the component's
    assert gen.root_composites(entries(composite("X", "value.as(Quantity)"), "X.value", "number"), "X") == {}
