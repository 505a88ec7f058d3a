"""`store.sql.new_id`: server-assigned ids are time-ordered version 7 UUIDs (RFC 9562 section 5.7)."""

from __future__ import annotations

import os
import time
import uuid
from unittest import mock

from hypothesis import given
from hypothesis import strategies as st

from fhir_server.store import sql

MILLIS = st.integers(min_value=0, max_value=2**48 - 1)


def _made(raw: bytes, ms: int, sub_ms_ns: int = 0) -> str:
    with (
        mock.patch.object(sql, "_random10", return_value=raw),
        mock.patch.object(time, "time_ns", return_value=ms * 1_000_000 + sub_ms_ns),
    ):
        return sql.new_id()


@given(st.binary(min_size=10, max_size=10), MILLIS, st.integers(min_value=0, max_value=999_999))
def test_an_id_is_the_uuid7_of_the_millisecond_and_74_random_bits(
    raw: bytes, ms: int, sub_ms_ns: int
) -> None:
    made = _made(raw, ms, sub_ms_ns)
    h = raw.hex()
    rand_a, rand_b = int(h[:3], 16), (int(h[3], 16) & 0x3) << 60 | int(h[4:19], 16)
    expected = uuid.UUID(int=ms << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b)
    assert made == str(expected)
    parsed = uuid.UUID(made)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert parsed.int >> 80 == ms


@given(st.binary(min_size=10, max_size=10), st.binary(min_size=10, max_size=10), MILLIS, MILLIS)
def test_ids_sort_as_text_in_the_order_they_were_made(raw1: bytes, raw2: bytes, ms1: int, ms2: int) -> None:
    """Ids of different milliseconds sort (as the b-tree of `uq_resource_type_id` compares them) by
    time, whatever their random bits: resources created together are inserted side by side."""
    first, second = _made(raw1, ms1), _made(raw2, ms2)
    if ms1 < ms2:
        assert first < second
    elif ms1 > ms2:
        assert first > second


def test_ids_do_not_repeat_within_a_millisecond() -> None:
    with mock.patch.object(time, "time_ns", return_value=1_796_000_000_000 * 1_000_000):
        ids = {sql.new_id() for _ in range(10_000)}
    assert len(ids) == 10_000


def test_the_random_bits_are_consecutive_slices_of_one_urandom_call_per_400_ids() -> None:
    """One system call (which releases the GIL) per 400 ids, not one per id; no byte handed out twice."""
    stream = bytes(range(256)) * 16
    calls: list[int] = []

    def urandom(n: int) -> bytes:
        calls.append(n)
        return stream[:n]

    sql._forget_pool()
    try:
        with mock.patch.object(os, "urandom", side_effect=urandom):
            taken = [sql._random10() for _ in range(401)]
    finally:
        # The pool now holds the fake stream, whose 10-byte slices repeat every 128 ids: left in
        # place, the ids this worker's later tests create could repeat within a millisecond.
        sql._forget_pool()
    assert calls == [sql._POOL_BYTES, sql._POOL_BYTES]
    assert b"".join(taken[:400]) == stream[: sql._POOL_BYTES]
    assert taken[400] == stream[:10]  # the second call's first bytes


def test_a_forked_child_does_not_hand_out_the_parents_pooled_bytes() -> None:
    sql._random10()  # the pool holds bytes now
    pool = sql._pool
    parents_next = pool.data[pool.at : pool.at + 10]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first 10 bytes, then leave without pytest's teardown
        try:
            os.write(write, sql._random10())
        finally:
            os._exit(0)
    os.close(write)
    childs = os.read(read, 10)
    os.close(read)
    os.waitpid(pid, 0)
    assert len(childs) == 10
    assert childs != parents_next
    assert sql._random10() == parents_next
