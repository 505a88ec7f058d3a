"""Resource validation (fhir_server/model.py): https://hl7.org/fhir/R4/datatypes.html#string."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from fhir_server import model
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
