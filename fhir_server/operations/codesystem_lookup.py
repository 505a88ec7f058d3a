"""CodeSystem/$lookup: the details of a concept (https://hl7.org/fhir/R4/codesystem-operation-lookup.html).

`[base]/CodeSystem/$lookup?system=...&code=...[&version=...][&property=...]` or POST with a `coding`,
over the code systems the server ships. The answer is a Parameters with `name`, `version`,
`display`, and `property` groups (code + value): `parent` and `child` (the hierarchy), `inactive`,
and the concept's own properties (e.g. `status`, `notSelectable`); `property` inputs choose which.
An unknown system, version or code is a 404; a code system the server has only in part (e.g.
SNOMED CT, content `not-present`) a 422.
"""

from __future__ import annotations

from typing import Any

from terminology import codesystems
from terminology.codesystems import CodeSystem, Concept

from ..errors import Invalid, NotFound, Unprocessable
from .parameters import OperationInput, group, parameters, part


def system_and_code(params: OperationInput, code_name: str, coding_name: str) -> tuple[str | None, str]:
    """(system, code) from `code` + `system` or from a Coding parameter."""
    code = params.text(code_name)
    coding = params.complex(coding_name)
    if (code is None) == (coding is None):
        raise Invalid(f"Give either '{code_name}' (with 'system') or '{coding_name}'", expression=code_name)
    if coding is not None:
        found = coding.get("code")
        if not isinstance(found, str) or not found:
            raise Invalid(f"The '{coding_name}' has no code", expression=coding_name)
        system = coding.get("system")
        return (system if isinstance(system, str) else None), found
    assert code is not None
    return params.text("system"), code


def code_system(system: str | None, version: str | None) -> CodeSystem:
    """The shipped code system; 400 without a system, 404 when unknown or of another version."""
    if system is None:
        raise Invalid("The code system is needed ('system')", expression="system")
    cs = codesystems.get(system)
    if cs is None:
        raise NotFound(f"Code system {system} is not known to this server", expression=system)
    if version is not None and version != cs.version:
        raise NotFound(f"Code system {system} version {version} is not known (this server has {cs.version})")
    return cs


def _properties(cs: CodeSystem, concept: Concept) -> list[tuple[str, str, Any]]:
    out: list[tuple[str, str, Any]] = [("parent", "code", p) for p in concept.parents]
    out += [("child", "code", c) for c in cs.children.get(concept.code, ())]
    out.append(("inactive", "boolean", concept.inactive))
    out += [(p.code, p.kind[5:], p.value) for p in concept.properties if p.code != "inactive"]
    return out


def lookup(params: OperationInput) -> dict[str, Any]:
    """The Parameters answer: name, version, display, property."""
    system, code = system_and_code(params, "code", "coding")
    cs = code_system(system, params.text("version"))
    concept = cs.find(code)
    if concept is None and not cs.complete:
        raise Unprocessable(f"Code system {cs.url} is not available in full on this server", cs.url)
    if concept is None:
        raise NotFound(f"Code '{code}' is not in code system {cs.url}", expression=code)
    asked = params.values.get("property", ())
    if not all(isinstance(w, str) for w in asked):
        raise Invalid("Parameter 'property' takes codes", expression="property")
    wanted = set(asked)
    out = [part("name", "string", cs.title or cs.name or cs.url)]
    if cs.version:
        out.append(part("version", "string", cs.version))
    out.append(part("display", "string", concept.display or concept.code))
    for name, kind, value in _properties(cs, concept):
        if not wanted or name in wanted:
            out.append(group("property", [part("code", "code", name), part("value", kind, value)]))
    return parameters(out)
