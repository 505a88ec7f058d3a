"""Generate the search registry data from HL7's R4 package (https://hl7.org/fhir/R4/searchparameter-registry.html).

Reads `hl7.fhir.r4.examples` 4.0.1 (see fhir_server/spec_package.py) and writes, into
fhir_server/search/data/:

- search_parameters.json: {resource type: [parameter, ...]} for every R4 resource type (the
  R4-only ones, which fhir.resources.R4B has no model for, included); each parameter's FHIRPath expression is cut down to the
  union parts that apply to that type (https://hl7.org/fhir/R4/searchparameter.html).
- compartment_patient.json: {resource type: [param code, ...]} from CompartmentDefinition-patient
  (https://hl7.org/fhir/R4/compartmentdefinition-patient.html).
- elements.json: the element types of every R4 resource, backbone element and complex data type
  (from the StructureDefinition snapshots), so FHIRPath expressions can be compiled with static
  types (https://hl7.org/fhir/R4/fhirpath.html#types).

Re-runnable: `.venv/bin/python scripts/gen_search_registry.py`.
"""

from __future__ import annotations

import itertools
import re
import sys
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhir_server import spec_package  # noqa: E402
from fhir_server.search.types import quantity  # noqa: E402

DATA = ROOT / "fhir_server" / "search" / "data"

# The Resource-level parameters every type gets (https://hl7.org/fhir/R4/resource.html#search).
RESOURCE_PARAMS = ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source")
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"


def split_union(expression: str) -> list[str]:
    """Split a FHIRPath expression on its top-level `|` (outside parentheses and string literals)."""
    parts: list[str] = []
    depth = 0
    quote = False
    start = 0
    i = 0
    while i < len(expression):
        ch = expression[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == "'":
                quote = False
        elif ch == "'":
            quote = True
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(expression[start:i].strip())
            start = i + 1
        i += 1
    parts.append(expression[start:].strip())
    return [p for p in parts if p]


def applies_to(part: str, resource_type: str) -> bool:
    """True when a union part navigates from `resource_type` (or from Resource/DomainResource)."""
    head = part.lstrip("(").lstrip()
    for name in (resource_type, "Resource", "DomainResource"):
        if head.startswith(name) and (len(head) == len(name) or not head[len(name)].isalnum()):
            return True
    return False


def restrict(expression: str, resource_type: str) -> str:
    """The parts of a union expression that apply to one resource type, joined again with `|`.

    A part written relative to the base (InsurancePlan-name is `name | alias`) gets the type prefixed.
    """
    kept = []
    for part in split_union(expression):
        if part[0].islower():
            kept.append(f"{resource_type}.{part}")
        elif applies_to(part, resource_type):
            kept.append(part)
    return " | ".join(kept)


def r4_types() -> set[str]:
    """Every concrete R4 resource type (base definitions of kind resource, not abstract)."""
    found = set()
    for path, sd in spec_package.resources("StructureDefinition-"):
        del path
        if (
            sd.get("kind") == "resource"
            and not sd.get("abstract")
            and sd.get("derivation") == "specialization"
        ):
            found.add(sd["type"])
    return found


# Known errors of the R4 definitions, corrected here (each checked by tests/search/test_parameters.py).
# DocumentReference-relationship: the two component expressions are swapped (`relatesto`, a
# reference, is given `code`; `relation`, a token, is given `target`); R4B and R5 fix this.
SWAPPED_COMPONENT_EXPRESSIONS = ("http://hl7.org/fhir/SearchParameter/DocumentReference-relationship",)


def parameter_entry(sp: dict[str, Any], expression: str, by_url: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The compact registry entry of one SearchParameter for one base type."""
    entry: dict[str, Any] = {"code": sp["code"], "type": sp["type"], "expression": expression}
    entry["url"] = sp["url"]
    if sp.get("target"):
        entry["targets"] = sorted(sp["target"])
    if sp.get("component"):
        components = []
        for comp in sp["component"]:
            definition = by_url[comp["definition"]]
            components.append(
                {"code": definition["code"], "type": definition["type"], "expression": comp["expression"]}
            )
        if sp["url"] in SWAPPED_COMPONENT_EXPRESSIONS:
            first, second = components
            first["expression"], second["expression"] = second["expression"], first["expression"]
        entry["components"] = components
    for key in ("comparator", "modifier"):
        if sp.get(key):
            entry[key + "s"] = list(sp[key])
    if sp.get("multipleOr") is False:
        entry["multipleOr"] = False
    if sp.get("multipleAnd") is False:
        entry["multipleAnd"] = False
    return entry


def search_parameters(types: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Every core R4 SearchParameter, per resource type, expressions restricted to the type."""
    bundle = dict(spec_package.resources("Bundle-searchParams"))
    params = [e["resource"] for b in bundle.values() for e in b["entry"]]
    by_url = {p["url"]: p for p in params}
    registry: dict[str, list[dict[str, Any]]] = {t: [] for t in sorted(types)}
    for sp in params:
        if "Resource" in sp["base"] and sp["code"] in RESOURCE_PARAMS:
            for resource_type in registry:
                registry[resource_type].append(parameter_entry(sp, sp.get("expression", ""), by_url))
            continue
        for base in sp["base"]:
            if base not in registry:
                continue
            expression = restrict(sp.get("expression", ""), base)
            if sp.get("expression") and not expression:
                print(f"warning: {sp['id']}: no part of the expression applies to {base}", file=sys.stderr)
            registry[base].append(parameter_entry(sp, expression, by_url))
    for resource_type, entries in registry.items():
        entries.sort(key=lambda e: e["code"])
        found = unions(entries)
        joined = root_composites(entries, resource_type)
        for entry in entries:
            if entry["code"] in found:
                entry["parts"] = list(found[entry["code"]])
            if entry["code"] in joined:
                entry["joined"] = list(joined[entry["code"]])
    return registry


# The element types each search type writes rows for, where it does not write them for every type
# (a branch selecting another type, value-quantity's SampledData, adds nothing to a parameter).
INDEXED = {"quantity": frozenset(t.lower() for t in quantity.INDEXED_TYPES)}
_AS = re.compile(r"^\(\s*(.+?)\s+as\s+(\w+)\s*\)$")


def _branch(expression: str, resource_type: str) -> str:
    """One union branch written relative to the resource: `(Observation.value as Quantity)` and
    `value.as(Quantity)` both become `value.as(quantity)` (type names compared without case:
    `dateTime` is `DateTime`)."""
    expression = expression.strip()
    found = _AS.match(expression)
    if found:
        expression = f"{found.group(1)}.as({found.group(2)})"
    if expression.startswith(resource_type + "."):
        expression = expression[len(resource_type) + 1 :]
    return re.sub(r"\.as\((\w+)\)", lambda m: f".as({m.group(1).lower()})", expression)


def _indexed(kind: str, branch: str) -> bool:
    """Whether a normalised branch (`_branch`) can give rows of a search type: yes unless it ends in
    `.as(type)` of a type that search type does not index."""
    found = re.search(r"\.as\((\w+)\)$", branch)
    return found is None or kind not in INDEXED or found.group(1) in INDEXED[kind]


def root_composites(entries: list[dict[str, Any]], resource_type: str) -> dict[str, tuple[str, ...]]:
    """The composites on the resource itself whose components are the type's own parameters.

    Observation `code-value-quantity` is the Observation with its `code` and `value.as(Quantity)`:
    one element per resource, so its match is a `code` row and a `value-quantity` row of the same
    Observation, and it needs no rows of its own (a resource matches when the rows of the component
    parameters match, search/types/composite.py). A component counts as its parameter (the one its
    definition names, same code and type) when their expressions select the same indexed values:
    the same branches, or the parameter's extra ones selecting only types its search type does not
    index (`value-quantity` also selects SampledData). `code-value-string` is not such a composite:
    `value-string` also reads `CodeableConcept.text`.
    """
    by_code = {e["code"]: e for e in entries}
    found: dict[str, tuple[str, ...]] = {}
    for e in entries:
        if e["type"] != "composite" or e["expression"] != resource_type or not e.get("components"):
            continue
        codes = []
        for c in e["components"]:
            param = by_code.get(c["code"])
            if param is None or param["type"] != c["type"]:
                break
            mine = {_branch(b, resource_type) for b in split_union(c["expression"])}
            theirs = {_branch(b, resource_type) for b in split_union(param["expression"])}
            extra = {b for b in theirs - mine if _indexed(c["type"], b)}
            if not mine <= theirs or extra:
                break
            codes.append(c["code"])
        else:
            found[e["code"]] = tuple(codes)
    return found


def unions(entries: list[dict[str, Any]]) -> dict[str, tuple[str, ...]]:
    """The parameters of one type whose expression is exactly the union of others' expressions.

    Observation `combo-code` is `Observation.code | Observation.component.code`: the rows of `code`
    and `component-code` together are its rows, so the server searches it over theirs and writes
    none of its own. The same holds for a composite whose element expression is the union of other
    composites' with the same components (`combo-code-value-quantity` = `code-value-quantity` |
    `component-code-value-quantity`): a composite matches within one parameter's rows, so each part
    numbers its elements (`grp`) on its own. In R4 these are the six `combo-` parameters of
    Observation: a quarter of an Observation's index rows.
    """
    branches = {e["code"]: split_union(e["expression"]) for e in entries if e["expression"]}
    by_code = {e["code"]: e for e in entries}

    def shape(entry: dict[str, Any]) -> list[tuple[str, str]]:
        return [(c["type"], c["expression"]) for c in entry.get("components", ())]

    found: dict[str, tuple[str, ...]] = {}
    for code, mine in branches.items():
        if len(mine) < 2:
            continue
        candidates = sorted(
            other
            for other, theirs in branches.items()
            if other != code
            and len(theirs) < len(mine)
            and set(theirs) <= set(mine)
            and by_code[other]["type"] == by_code[code]["type"]
            and shape(by_code[other]) == shape(by_code[code])
        )
        for size in range(2, len(candidates) + 1):
            cover = next(
                (
                    chosen
                    for chosen in itertools.combinations(candidates, size)
                    if sorted(b for other in chosen for b in branches[other]) == sorted(mine)
                ),
                None,
            )
            if cover is not None:
                found[code] = cover
                break
    return found


def compartment_patient(types: set[str]) -> dict[str, list[str]]:
    """Resource type -> the parameters that link it to the Patient compartment."""
    definition = dict(spec_package.resources("CompartmentDefinition-patient"))
    (cd,) = definition.values()
    return {r["code"]: list(r["param"]) for r in cd["resource"] if r.get("param") and r["code"] in types}


def element_type_code(type_: dict[str, Any]) -> str:
    """The FHIR type code of one ElementDefinition.type (System.String -> the fhir-type extension)."""
    code: str = type_["code"]
    if code.startswith("http://hl7.org/fhirpath/System."):
        for ext in type_.get("extension", []):
            if ext.get("url") == FHIR_TYPE_EXT:
                return str(ext["valueUrl"])
        return code.rsplit(".", 1)[1].lower()
    return code


def elements() -> dict[str, Any]:
    """{"types": {type: {element: type | [choice types]}}, "parents": {type: base type}}."""
    types: dict[str, dict[str, Any]] = {}
    parents: dict[str, str] = {}
    for _path, sd in spec_package.resources("StructureDefinition-"):
        if sd.get("derivation") != "specialization" or sd.get("kind") not in ("resource", "complex-type"):
            continue
        name = sd["type"]
        if sd.get("baseDefinition"):
            parents[name] = sd["baseDefinition"].rsplit("/", 1)[1]
        snapshot = sd["snapshot"]["element"]
        paths = {e["path"] for e in snapshot}
        for element in snapshot:
            path: str = element["path"]
            if "." not in path:
                types.setdefault(path, {})
                continue
            owner, leaf = path.rsplit(".", 1)
            owner_type = name if owner == sd["type"] else owner
            table = types.setdefault(owner_type, {})
            if "contentReference" in element:
                table[leaf] = element["contentReference"].lstrip("#")
            elif leaf.endswith("[x]"):
                table[leaf[:-3]] = [element_type_code(t) for t in element["type"]]
            else:
                codes = [element_type_code(t) for t in element.get("type", [])]
                has_children = any(p.startswith(path + ".") for p in paths)
                if has_children and codes and codes[0] in ("BackboneElement", "Element"):
                    table[leaf] = path
                elif codes:
                    table[leaf] = codes[0]
    return {"types": dict(sorted(types.items())), "parents": dict(sorted(parents.items()))}


def write(name: str, data: Any) -> None:
    """Write one JSON file (sorted, one top-level key per line for readable diffs)."""
    DATA.mkdir(parents=True, exist_ok=True)
    lines = [
        f"{orjson.dumps(key).decode()}: {orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()}"
        for key, value in data.items()
    ]
    (DATA / name).write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")


def main() -> None:
    types = r4_types()
    registry = search_parameters(types)
    write("search_parameters.json", registry)
    write("compartment_patient.json", compartment_patient(types))
    model = elements()
    DATA.mkdir(parents=True, exist_ok=True)
    (DATA / "elements.json").write_text(
        "{\n"
        + f'"parents": {orjson.dumps(model["parents"]).decode()},\n'
        + '"types": {\n'
        + ",\n".join(
            f"{orjson.dumps(k).decode()}: {orjson.dumps(v).decode()}" for k, v in model["types"].items()
        )
        + "\n}\n}\n",
        encoding="utf-8",
    )
    count = sum(len(v) for v in registry.values())
    print(f"{len(registry)} resource types, {count} parameters, {len(model['types'])} element types")


if __name__ == "__main__":
    main()
