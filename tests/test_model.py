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
