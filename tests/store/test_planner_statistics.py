"""Bulk work refreshes stale planner statistics (https://www.postgresql.org/docs/15/sql-analyze.html)."""

from __future__ import annotations

import time

from fhir_server.store import autoanalyze, bulk_write, planner_statistics
from fhir_server.store.sql import Store
from tests import factories


def test_stale_tables_are_analyzed_once(store: Store) -> None:
    # Counts of earlier tests could bring a background ANALYZE (store/autoanalyze.py) of `resource`
    # first; a fresh analyzer leaves 300 rows alone (below its base threshold).
    store.analyzer = autoanalyze.Analyzer(store.engine)
    planner_statistics.refresh(store)
    bulk_write.write(store, [{**factories.patient(), "id": f"p{i}"} for i in range(300)])
    if store.sqlite:
        assert planner_statistics.refresh(store) == []
        return
    deadline = time.monotonic() + 10  # backends report their row counts about once a second
    analyzed: list[str] = []
    while "resource" not in analyzed:
        assert time.monotonic() < deadline, (
            "300 new rows (more than a fifth of 1,000) were never seen as stale"
        )
        analyzed = planner_statistics.refresh(store)
        time.sleep(0.2)
    assert planner_statistics.refresh(store) == []
