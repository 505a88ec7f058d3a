"""Resource validation (fhir_server/model.py): https://hl7.org/fhir/R4/datatypes.html#string."""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from fhir_server import model, spec_package
from fhir_server.errors import Invalid


def _verdict(resource: dict[str, Any], parsed_from: bytes | None) -> str | None:
    try:
        model.validate(resource, parsed_from=parsed_from)
    except Invalid as exc:
        return f"{exc.message} @ {exc.issues[0].expression if exc.issues else ''}"
    return None


def _patient(family: str, given_name: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family, "given": [given_name]}]}


@given(st.text(max_size=20), st.text(max_size=20), st.booleans())
def test_the_json_text_never_changes_the_verdict(family: str, given_name: str, ascii_only: bool) -> None:
    """Skipping the control character walk for text that cannot hold one accepts and rejects exactly
    what the walk does, for orjson's output and for escaped ASCII JSON (\\u00XX, \\b, \\f escapes)."""
    resource = _patient(family, given_name)
    text = json.dumps(resource).encode() if ascii_only else orjson.dumps(resource)
    parsed = orjson.loads(text)
    assert _verdict(parsed, text) == _verdict(parsed, None)


def test_an_escaped_control_character_is_rejected_where_it_is() -> None:
    text = b'{"resourceType":"Patient","name":[{"family":"a\\u0007b"}]}'
    assert _verdict(orjson.loads(text), text) == (
        "Strings may not contain control characters other than tab, CR and LF @ ('Patient.name[0].family',)"
    )


def test_a_backspace_escape_is_rejected_and_an_escaped_backslash_before_b_is_not() -> None:
    backspace = b'{"resourceType":"Patient","name":[{"family":"a\\bc"}]}'
    assert _verdict(orjson.loads(backspace), backspace) is not None
    backslash_b = b'{"resourceType":"Patient","name":[{"family":"a\\\\bc"}]}'
    assert _verdict(orjson.loads(backslash_b), backslash_b) is None


# ---------------------------------------------------------------- control characters without the JSON text

_ENVELOPE_EXAMPLES = [
    orjson.loads(p.read_bytes())
    for p in sorted(spec_package.ensure().glob("*.json"))
    if p.name.split("-", 1)[0] in {"Patient", "Observation", "Questionnaire", "Bundle", "Composition"}
]
_INJECTED = st.sampled_from([chr(c) for c in range(0x20)] + ["\x7f", "\\", "\\b", "\u2028", "é", "😀"])


def _string_places(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every string value, and (as `(*path, None)`) to every object, where a key can go."""
    out: list[tuple[Any, ...]] = []
    if isinstance(node, str):
        return [path]
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    if isinstance(node, dict):
        out.append((*path, None))
    for key, value in items:
        if key != "resourceType" and not (path == () and key == "id"):
            out += _string_places(value, (*path, key))
    return out


def _envelope(resource: dict[str, Any], parsed_from: bytes | None) -> str | None:
    try:
        model.check_envelope(resource, parsed_from=parsed_from)
    except Invalid as exc:
        return f"{exc.message} @ {exc.issues[0].expression if exc.issues else ''}"
    return None


@given(st.data())
def test_the_envelope_without_text_finds_what_the_walk_finds(data: st.DataObject) -> None:
    """Without the JSON text, check_envelope walks only when orjson's text of the resource may hold a
    control character: it rejects exactly what the walk alone rejects, at the same place, for HL7's
    examples with characters put into strings (and keys) at random, and for values orjson refuses."""
    resource = copy.deepcopy(data.draw(st.sampled_from(_ENVELOPE_EXAMPLES)))
    chars = st.sampled_from(data.draw(st.lists(_INJECTED, min_size=1, max_size=2)))  # often one kind
    for _ in range(data.draw(st.integers(0, 3))):
        path = data.draw(st.sampled_from(_string_places(resource)))
        parent = resource
        for key in path[:-2] if path[-1] is None else path[:-1]:
            parent = parent[key]
        char = data.draw(chars)
        if path[-1] is None:  # a key holding the character, with a string value
            target = parent[path[-2]] if len(path) > 1 else parent
            target["x" + char] = data.draw(st.sampled_from(["plain", "a" + char]))
            continue
        text = parent[path[-1]]
        at = data.draw(st.integers(0, len(text)))
        parent[path[-1]] = text[:at] + char + text[at:]
    if data.draw(st.booleans()):  # something orjson cannot write: the walk decides alone
        resource["extension"] = [
            {"url": "http://x", "valueString": data.draw(st.sampled_from(["ok", "b\x01"]))}
        ]
        resource["_unserialisable"] = data.draw(st.sampled_from([{1, 2}, 2**70, {1: "x"}, "\ud800"]))
    assert _envelope(resource, None) == _envelope(resource, b"\\u00")  # b"\\u00": always walk


def test_a_control_character_is_found_without_the_text() -> None:
    for code in range(0x20):  # each one alone (orjson writes \b, \f, \n, \r, \t short)
        patient = {"resourceType": "Patient", "name": [{"family": "a", "given": ["b", "c" + chr(code)]}]}
        expected = _envelope(patient, b"\\u00")
        assert _envelope(patient, None) == expected, code
        assert (expected is None) == (chr(code) in "\t\r\n")
    patient = {"resourceType": "Patient", "name": [{"family": "a", "given": ["b", "c\x1f"]}]}
    assert _envelope(patient, None) == (
        "Strings may not contain control characters other than tab, CR and LF @ ('Patient.name[0].given[1]',)"
    )
    patient["name"][0]["given"][1] = "c\t\r\n"
    assert _envelope(patient, None) is None
    patient["_odd"] = {1, 2}  # orjson refuses it: the walk runs
    patient["name"][0]["family"] = "\x00"
    assert _envelope(patient, None) is not None


def _r4b_model_types() -> frozenset[str]:
    """The resource types the R4B models define (how `model.resource_types` used to list them)."""
    import importlib
    import pkgutil

    import fhir.resources.R4B as r4b

    names: set[str] = set()
    for info in pkgutil.iter_modules(r4b.__path__):
        if info.name.startswith(("fhirtypes", "fhirprimitive", "_")):
            continue
        for attr in vars(importlib.import_module(f"{r4b.__name__}.{info.name}")).values():
            rtype = getattr(attr, "__resource_type__", None)
            resource = isinstance(attr, type) and any(b.__name__ == "Resource" for b in attr.__mro__[1:])
            if resource and rtype == attr.__name__:
                names.add(rtype)
    return frozenset(names)


def test_the_stored_types_are_the_r4b_models_types_less_r4b_only_plus_r4_only() -> None:
    """HL7's resource-types code system gives the same 145 types as the R4B models adjusted by hand."""
    expected = (
        _r4b_model_types() - {"Parameters", "Resource", "DomainResource"} - model.R4B_ONLY
    ) | model.R4_ONLY
    assert model.resource_types() == expected
    assert "Parameters" not in model.resource_types() and "Observation" in model.resource_types()
    assert model.has_r4b_model("Observation") and not model.has_r4b_model("SubstanceProtein")
    assert not model.has_r4b_model("Citation")  # R4B-only: not served at all
