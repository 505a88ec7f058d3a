"""The shipped terminology data is what scripts/gen_terminology.py derives from HL7's package
(https://hl7.org/fhir/R4/codesystem.html, https://hl7.org/fhir/R4/valueset.html)."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path
from types import ModuleType

import orjson

from terminology import codesystems

from .package_oracle import children, codes, resource

ROOT = Path(__file__).resolve().parents[2]
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_terminology", ROOT / "scripts" / "gen_terminology.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_file_is_what_the_generator_makes_and_is_small() -> None:
    assert codesystems.DATA.stat().st_size < 2_000_000
    committed = orjson.loads(gzip.decompress(codesystems.DATA.read_bytes()))
    assert committed == orjson.loads(orjson.dumps(generator().generate()))


def test_every_concept_and_hierarchy_edge_of_a_code_system_is_kept() -> None:
    cs = codesystems.get(ROLE_CODE)
    assert cs is not None and cs.complete and cs.version == resource("CodeSystem-v3-RoleCode")["version"]
    assert list(cs.concepts) == list(dict.fromkeys(codes("CodeSystem-v3-RoleCode")))
    expected = {parent: kids for parent, kids in children("CodeSystem-v3-RoleCode").items() if kids}
    assert {p: set(k) for p, k in cs.children.items()} == expected


def test_concept_properties_are_kept() -> None:
    cs = codesystems.get(ROLE_CODE)
    assert cs is not None
    top = cs.concepts["_AffiliationRoleType"]
    assert top.abstract and top.property_values("notSelectable") == [True]
    assert not cs.concepts["CHILD"].abstract


def test_code_systems_without_their_content_are_known_but_not_complete() -> None:
    snomed = codesystems.get("http://snomed.info/sct")
    assert snomed is not None and not snomed.complete and not snomed.concepts
    assert codesystems.get("http://loinc.org") is None


def test_a_code_system_resource_parses_with_parent_and_subsumed_by_properties() -> None:
    cs = codesystems.from_resource(
        {
            "url": "http://example.org/cs",
            "content": "complete",
            "concept": [
                {"code": "a", "display": "A", "concept": [{"code": "b"}]},
                {"code": "c", "property": [{"code": "parent", "valueCode": "a"}]},
                {
                    "code": "d",
                    "property": [
                        {"code": "subsumedBy", "valueCode": "c"},
                        {"code": "status", "valueCode": "retired"},
                    ],
                },
            ],
        }
    )
    assert cs.children == {"a": ("b", "c"), "c": ("d",)}
    assert set(cs.descendants("a")) == {"b", "c", "d"} and set(cs.ancestors("d")) == {"a", "c"}
    assert cs.concepts["d"].inactive and not cs.concepts["c"].inactive
