"""`store.sql.new_id`: server-assigned ids are random version 4 UUIDs, formatted as `uuid.uuid4()` does."""

from __future__ import annotations

import os
import uuid
from unittest import mock

from hypothesis import given
from hypothesis import strategies as st

from fhir_server.store import sql


@given(st.binary(min_size=16, max_size=16))
def test_an_id_is_the_text_uuid4_makes_of_the_same_random_bytes(raw: bytes) -> None:
    with mock.patch.object(os, "urandom", return_value=raw):
        made = sql.new_id()
        expected = str(uuid.uuid4())
    assert made == expected
    parsed = uuid.UUID(made)
    assert parsed.version == 4
    assert parsed.variant == uuid.RFC_4122
    assert str(parsed) == made


def test_ids_do_not_repeat() -> None:
    ids = {sql.new_id() for _ in range(10_000)}
    assert len(ids) == 10_000
