"""Crossing transactions serialise instead of deadlocking (https://hl7.org/fhir/R4/http.html#transaction).

Each client sends transaction Bundles that update the same shared Patients in its own order; every
Bundle either commits whole (200) or is refused whole (409), never a 5xx, and the versions stay gapless.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fhir_server.store.sql import Store
from tests import factories
from tests.conftest import BASE

FHIR = {"Content-Type": "application/fhir+json"}


def _put(rid: str, family: str) -> dict[str, Any]:
    return {
        "request": {"method": "PUT", "url": f"Patient/{rid}"},
        "resource": {**factories.patient(family), "id": rid},
    }


def _seed(client: TestClient, ids: list[str]) -> None:
    for rid in ids:
        r = client.put(f"/Patient/{rid}", json={**factories.patient("Seed"), "id": rid}, headers=FHIR)
        assert r.status_code == 201, r.text


def _clients(app: FastAPI, n: int, work: Callable[[int, TestClient], list[int]]) -> list[int]:
    """Run work(i, client) in n threads that start together, each with its own client; all statuses."""
    barrier = threading.Barrier(n)
    statuses: list[list[int]] = [[] for _ in range(n)]
    failures: list[BaseException] = []

    def run(i: int) -> None:
        client = TestClient(app, base_url=BASE, raise_server_exceptions=False)
        barrier.wait()
        try:
            statuses[i] = work(i, client)
        except BaseException as exc:  # reported below: a thread's error must fail the test
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    return [s for per_client in statuses for s in per_client]


def _versions(store: Store, rid: str) -> list[int]:
    with store.read() as tx:
        return sorted(s.version for _, s in tx.history(res_type="Patient", res_id=rid, limit=1000))


@pytest.mark.postgres
def test_twenty_clients_updating_five_patients_in_random_order_never_fail_with_5xx(
    client: TestClient, store: Store
) -> None:
    ids = [f"shared-{k}" for k in range(5)]
    _seed(client, ids)

    def work(i: int, c: TestClient) -> list[int]:
        rng = random.Random(i)
        out = []
        for n in range(5):
            order = rng.sample(ids, len(ids))
            r = c.post(
                "/", json=factories.transaction(*(_put(rid, f"C{i}T{n}") for rid in order)), headers=FHIR
            )
            if r.status_code != 200:
                assert r.json()["resourceType"] == "OperationOutcome", r.text
            out.append(r.status_code)
        return out

    statuses = _clients(client.app, 20, work)  # type: ignore[arg-type]
    assert not [s for s in statuses if s >= 500], statuses
    assert set(statuses) <= {200, 409}, statuses
    committed = statuses.count(200)
    for rid in ids:
        assert _versions(store, rid) == list(range(1, committed + 2))


def test_two_transactions_updating_two_patients_in_opposite_order_both_commit(
    client: TestClient, store: Store
) -> None:
    _seed(client, ["a", "b"])
    rounds = 10

    def work(i: int, c: TestClient) -> list[int]:
        order = ["a", "b"] if i == 0 else ["b", "a"]
        return [
            c.post(
                "/", json=factories.transaction(*(_put(rid, f"R{n}") for rid in order)), headers=FHIR
            ).status_code
            for n in range(rounds)
        ]

    statuses = _clients(client.app, 2, work)  # type: ignore[arg-type]
    assert statuses == [200] * (2 * rounds)
    assert _versions(store, "a") == _versions(store, "b") == list(range(1, 2 * rounds + 2))
