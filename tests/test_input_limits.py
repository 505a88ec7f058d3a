"""The input-limit rules (fhir_server/input_limits.py): each hostile value is an Invalid (400) naming where."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_server import input_limits
from fhir_server.errors import Invalid


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def test_nul_and_control_characters_are_rejected_naming_where() -> None:
    for bad in ("a\x00b", "\x1b[0m", "x\x7f"):
        with pytest.raises(Invalid) as caught:
            input_limits.check_text(bad, "family")
        assert caught.value.expression == ("family",)


def test_tab_cr_lf_are_allowed_in_values_but_not_in_single_line_text() -> None:
    input_limits.check_text("line 1\r\n\tline 2", "note")
    with pytest.raises(Invalid):
        input_limits.check_text("a\nb", "url", single_line=True)
    input_limits.check_text('W/"1"\t', "if-match", single_line=True)


def test_integers_beyond_64_bits_or_not_ascii_digits_are_rejected() -> None:
    assert input_limits.integer("9223372036854775807", "vid") == 2**63 - 1
    for bad in ("9223372036854775808", "99999999999999999999999", "9" * 5000, "²", "-1", "1e3", ""):
        with pytest.raises(Invalid) as caught:
            input_limits.integer(bad, "vid")
        assert caught.value.expression == ("vid",)


def test_headers_over_their_limit_are_rejected() -> None:
    input_limits.check_header("if-match", 'W/"12"')
    with pytest.raises(Invalid) as caught:
        input_limits.check_header("if-match", 'W/"' + "9" * 5000 + '"')
    assert caught.value.expression == ("if-match",)
    with pytest.raises(Invalid):
        input_limits.check_header("x-anything", "a" * (input_limits.MAX_HEADER_BYTES + 1))


def test_json_pointer_escapes_other_than_tilde_0_and_1_are_rejected() -> None:
    for good in ("", "/name/0/family", "/a~0b/c~1d", "/"):
        input_limits.check_json_pointer(good, "$this[0].path")
    for bad in ("/name/~2", "/name/~", "name", 7):
        with pytest.raises(Invalid) as caught:
            input_limits.check_json_pointer(bad, "$this[0].path")
        assert caught.value.expression == ("$this[0].path",)


def test_json_depth_ignores_brackets_inside_strings_and_escapes() -> None:
    text = rb'{"a": "[[[{", "b": ["\\", ["\"]]]"]], "c\\\\": {"d": "\\\\\"["}}'
    assert input_limits.json_depth(text) == _depth(orjson.loads(text)) == 3


json_values = st.recursive(
    st.none() | st.integers() | st.text(alphabet='[]{}"\\ab\n'),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text('[]{}"\\k'), children, max_size=3)
    ),
    max_leaves=30,
)


@given(json_values, st.booleans())
def test_json_depth_equals_the_parsed_nesting_depth(value: object, indent: bool) -> None:
    text = json.dumps(value, indent=1 if indent else None, ensure_ascii=False).encode()
    assert input_limits.json_depth(text) == _depth(value)


def test_json_nested_deeper_than_the_limit_is_rejected_before_parsing() -> None:
    limit = input_limits.MAX_JSON_DEPTH
    input_limits.loads_json(b"[" * limit + b"]" * limit)
    with pytest.raises(Invalid, match="deeper than"):
        input_limits.loads_json(b"[" * (limit + 1) + b"]" * (limit + 1))
    with pytest.raises(Invalid, match="deeper than"):  # orjson alone would fail on 1024+, not here
        input_limits.loads_json(b'{"a":' * 5000 + b"1" + b"}" * 5000)
