"""Signed paging cursors (fhir_server/search/cursor_signing.py): only cursors this server issued are decoded."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from fhir_server.errors import Invalid
from fhir_server.search import cursor_signing
from fhir_server.search.query import decode_cursor, encode_cursor


def test_a_signed_cursor_round_trips() -> None:
    key = b"k" * 32
    cursor = decode_cursor(encode_cursor("family", ["x"], 7, key=key), "family", 1, key=key)
    assert (cursor.keys, cursor.pk) == (("x",), 7)


def test_a_cursor_signed_with_another_key_is_a_400() -> None:
    token = encode_cursor("family", ["x"], 7, key=b"a" * 32)
    with pytest.raises(Invalid) as caught:
        decode_cursor(token, "family", 1, key=b"b" * 32)
    assert caught.value.expression == ("_cursor",)


def test_a_forged_cursor_of_deeply_nested_json_is_a_400_not_a_recursion_error() -> None:
    forged = base64.urlsafe_b64encode(b"[" * 100_000 + b"]" * 100_000).decode().rstrip("=")
    for text in (forged, forged + ".AAAAAAAAAAAAAAAAAAAAAA"):
        with pytest.raises(Invalid):
            decode_cursor(text, "", 0)


def test_the_key_is_kept_in_the_data_dir_and_reused(tmp_path: Path) -> None:
    key = cursor_signing.key_for(tmp_path)
    assert len(key) == 32
    assert (tmp_path / "keys" / cursor_signing.KEY_FILE).stat().st_mode & 0o077 == 0
    cursor_signing.key_for.cache_clear()
    assert cursor_signing.key_for(tmp_path) == key
