"""The keys and tables of results remembered by an element's JSON (fhir_server/element_memo.py)."""

from __future__ import annotations

import math
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from fhir_server.element_memo import MAX_BYTES, Table, key_text

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)


def _holds_null_or_nan(value: Any) -> bool:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return True
    if isinstance(value, list):
        return any(_holds_null_or_nan(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_null_or_nan(v) for v in value.values())
    return False


@given(_JSON)
def test_a_key_is_the_value_s_json_and_only_what_reads_back_the_same_has_one(value: Any) -> None:
    """A key reads back as the value itself, so two values share a key only when equal as JSON; a NaN
    or an infinity (written as null by orjson) or a null, an int beyond 64 bits, or JSON over
    MAX_BYTES gets none."""
    key = key_text(value)
    if key is None:
        try:
            blob = orjson.dumps(value)
        except TypeError:
            return  # not JSON (an int beyond 64 bits)
        assert len(blob) > MAX_BYTES or b"null" in blob
        return
    assert not _holds_null_or_nan(value)
    assert orjson.loads(key) == value
    assert len(key.encode()) <= MAX_BYTES


def test_a_nan_and_a_null_never_share_a_key() -> None:
    assert key_text({"value": float("nan")}) is None
    assert key_text({"value": None}) is None
    assert key_text({"value": 2**70}) is None
    assert key_text(["x" * MAX_BYTES]) is None
    assert key_text({"value": 1.5}) == '{"value":1.5}'


def test_a_table_is_emptied_when_a_new_key_would_pass_its_bound() -> None:
    table: Table[str, int] = Table(3)
    for i, k in enumerate("abc"):
        assert table.put(k, i) == i
    table.put("a", 10)  # a known key: replaced, nothing forgotten
    assert dict(table) == {"a": 10, "b": 1, "c": 2}
    table.put("d", 3)
    assert dict(table) == {"d": 3}
