"""Concurrent writers never lose an update (https://hl7.org/fhir/R4/http.html#concurrency), on both databases."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from fhir_server.errors import FhirError, PreconditionFailed
from fhir_server.interactions import create, update
from fhir_server.interactions.context import Context
from fhir_server.settings import Settings
from fhir_server.store.sql import Store
from tests import factories


def _race(n: int, work: Callable[[int], Any]) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except FhirError as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _ctx(store: Store) -> Context:
    return Context(store=store, settings=Settings(base_url="http://testserver"))


def test_two_updates_with_the_same_if_match_never_both_succeed(store: Store) -> None:
    ctx = _ctx(store)
    with store.write() as tx:
        rid = create.create(ctx, tx, "Patient", factories.patient()).stored.res_id

    def work(i: int) -> Any:
        with store.write() as tx:
            body = {**factories.patient(f"Writer{i}"), "id": rid}
            return update.update(ctx, tx, "Patient", rid, body, if_match=1)

    for _ in range(5):
        results = _race(2, work)
        wins = [r for r in results if not isinstance(r, FhirError)]
        losses = [r for r in results if isinstance(r, PreconditionFailed)]
        assert len(wins) == 1 and len(losses) == 1, results
        with store.write() as tx:  # reset to a fresh resource at version 1 for the next round
            rid = create.create(ctx, tx, "Patient", factories.patient()).stored.res_id


def test_concurrent_updates_without_if_match_are_all_kept_with_gapless_versions(store: Store) -> None:
    ctx = _ctx(store)
    with store.write() as tx:
        rid = create.create(ctx, tx, "Patient", factories.patient()).stored.res_id
    n = 8

    def work(i: int) -> Any:
        with store.write() as tx:
            return update.update(ctx, tx, "Patient", rid, {**factories.patient(f"W{i}"), "id": rid})

    results = _race(n, work)
    assert not [r for r in results if isinstance(r, FhirError)], results
    with store.read() as tx:
        versions = sorted(s.version for _, s in tx.history(res_type="Patient", res_id=rid, limit=100))
        families = {tx.version("Patient", rid, v).resource()["name"][0]["family"] for v in versions[1:]}  # type: ignore[union-attr]
    assert versions == list(range(1, n + 2))
    assert families == {f"W{i}" for i in range(n)}


def test_conditional_create_raced_by_twenty_clients_creates_exactly_one(store: Store) -> None:
    ctx = _ctx(store)
    body = {**factories.patient(), "identifier": [{"system": "urn:test:mrn", "value": "race-1"}]}

    def work(i: int) -> Any:
        with store.write() as tx:
            return create.create(
                ctx, tx, "Patient", dict(body), if_none_exist="identifier=urn:test:mrn|race-1"
            )

    results = _race(20, work)
    assert not [r for r in results if isinstance(r, FhirError)], results
    assert sum(1 for r in results if r.created) == 1
    assert len({r.stored.res_id for r in results}) == 1
    with store.read() as tx:
        assert len(tx.history(res_type="Patient", limit=100)) == 1


def test_conditional_update_raced_by_clients_creates_one_and_keeps_every_version(store: Store) -> None:
    ctx = _ctx(store)

    def work(i: int) -> Any:
        body = {**factories.patient(f"U{i}"), "identifier": [{"system": "urn:test:mrn", "value": "race-2"}]}
        with store.write() as tx:
            return update.conditional_update(ctx, tx, "Patient", "identifier=urn:test:mrn|race-2", body)

    results = _race(10, work)
    assert not [r for r in results if isinstance(r, FhirError)], results
    assert sum(1 for r in results if r.created) == 1
    with store.read() as tx:
        versions = sorted(s.version for _, s in tx.history(res_type="Patient", limit=100))
    assert versions == list(range(1, 11))
