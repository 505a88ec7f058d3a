"""Warm a server process before it takes requests.

The first request would otherwise pay for one-time work: the validator's compiled definitions,
the UCUM tables behind quantity indexing (~1 s) and the compiled search index plans. A benchmark or a user would see that as a slow first request per worker.

Then the ~400,000 objects loaded so far are frozen out of the cyclic garbage collector
(https://docs.python.org/3/library/gc.html#gc.freeze): they live as long as the process, and every
full collection would otherwise walk them all, a pause of about 0.2 s in the middle of requests.

`bulk_collection()` spaces collections out while a bulk job allocates millions of short-lived
containers (parsed lines, model instances, index rows); `chunked_collection()` runs them between a
chunked job's chunks instead.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from . import model, validation
from .search.index import index_rows, plan

log = logging.getLogger("fhir_server")

_OBSERVATION = {
    "resourceType": "Observation",
    "id": "warm-up",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    "subject": {"reference": "Patient/warm-up"},
    "effectiveDateTime": "2024-01-01T00:00:00Z",
    "valueQuantity": {"value": 60, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
}


def warm_up() -> None:
    """Load the models, the UCUM tables and every resource type's index plan."""
    start = time.perf_counter()
    for resource_type in model.resource_types():
        plan(resource_type)
    model.validate(dict(_OBSERVATION))
    validation.validate(dict(_OBSERVATION))  # compiles the Observation definitions and their datatypes
    index_rows(dict(_OBSERVATION))
    gc.collect()
    gc.freeze()
    log.info("warmed up in %.1f s", time.perf_counter() - start)


# Generation-0 threshold during bulk work. The default (700 allocations) runs a collection every few
# resources, and each older-generation pass walks every live batch: measured on 1,000-line batches
# of Observations, preparing (validate + index) 188 -> 135 us per line and unpickling a prepared
# batch 57 -> 12 us per line. Memory stays bounded: collections still run, 70x less often.
BULK_GC_THRESHOLD = (50_000, 20, 100)


@contextmanager
def bulk_collection() -> Iterator[None]:
    """Run a bulk job with rarer cyclic collections (see BULK_GC_THRESHOLD); restores the old setting."""
    before = gc.get_threshold()
    gc.set_threshold(*BULK_GC_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*before)


# Generation-0 threshold while a chunked writer runs: only a safety net (a chunk of 1,000 records
# leaves ~170,000 containers alive until it is written, one of the default 2,000 twice that); the
# collections run between chunks.
CHUNKED_GC_THRESHOLD = (1_000_000, 20, 100)
# Chunks between two collections. A collection walks the chunk still in flight (pipelined writers
# keep one): 25 ms each, 2.4 s of 27 s of CPU per 100,000 Apple Health records when run after every
# chunk, for about 16 objects of cyclic garbage per chunk. Every 8th chunk: 0.6 s, the same peak RSS.
CHUNKS_PER_COLLECTION = 8


@contextmanager
def chunked_collection() -> Iterator[Callable[[], None]]:
    """Collect between the chunks of a bulk writer (call the function it gives after each chunk).

    Collections walk the objects alive at the time. In the middle of a chunk that is all of its
    records, resources and index rows: `fhir-server ingest` spent 2.4 s of 27 in 348 generation-0
    collections per 100,000 records at `BULK_GC_THRESHOLD`. After a chunk its objects are freed
    by their reference counts, and a collection walks only what outlives it (and the chunk in
    flight); one runs every `CHUNKS_PER_COLLECTION` chunks. Restores the old setting."""
    before = gc.get_threshold()
    gc.set_threshold(*CHUNKED_GC_THRESHOLD)
    chunks = 0

    def between_chunks() -> None:
        """Every `CHUNKS_PER_COLLECTION` chunks, collect the young generation, and the middle one
        every `CHUNKED_GC_THRESHOLD[1]` collections."""
        nonlocal chunks
        chunks += 1
        if chunks % CHUNKS_PER_COLLECTION == 0:
            gc.collect(1 if gc.get_count()[1] >= CHUNKED_GC_THRESHOLD[1] else 0)

    try:
        yield between_chunks
    finally:
        gc.set_threshold(*before)
