"""`serve --workers 2`: a scrape answered by either worker counts the requests of both (prometheus-client's
multiprocess mode); without it each worker showed only its own counters (seen on the first version)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.live_server import free_port
from tests.test_cli_newcomer import serving


def _capabilities_count(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "fhir_http_requests_total" and s.labels.get("interaction") == "capabilities":
                return s.value
    return 0.0


@pytest.mark.slow
def test_a_scrape_of_any_worker_counts_every_worker(tmp_path: Path) -> None:
    port = free_port()
    with serving(tmp_path, port, "--workers", "2", FHIR_METRICS_TOKEN="s3cret"):
        for _ in range(20):  # new connections: the kernel spreads them over both workers
            with httpx.Client() as c:
                assert c.get(f"http://127.0.0.1:{port}/metadata", timeout=60).status_code == 200
        for _ in range(6):
            with httpx.Client() as c:
                r = c.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": "Bearer s3cret"})
            assert r.status_code == 200
            assert _capabilities_count(r.text) == 20
    assert "Traceback" not in (tmp_path / "serve.log").read_text()
