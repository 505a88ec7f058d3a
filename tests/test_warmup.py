"""Garbage collection around bulk writers (fhir_server/warmup.py)."""

from __future__ import annotations

import gc
import weakref

from fhir_server.warmup import CHUNKED_GC_THRESHOLD, CHUNKS_PER_COLLECTION, chunked_collection


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_a_chunked_writer_collects_the_cycles_of_a_chunk_between_chunks_and_restores_the_threshold() -> None:
    before = gc.get_threshold()
    with chunked_collection() as between_chunks:
        assert gc.get_threshold() == CHUNKED_GC_THRESHOLD
        node = _Node()
        gone = weakref.ref(node)
        del node
        assert gone() is not None  # no collection in the middle of a chunk
        for _ in range(CHUNKS_PER_COLLECTION - 1):
            between_chunks()
            assert gone() is not None  # nor after each chunk: a collection walks the one in flight
        between_chunks()
        assert gone() is None
    assert gc.get_threshold() == before
