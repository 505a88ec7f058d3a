"""Posting ingest bundles to a FHIR base URL (https://hl7.org/fhir/R4/http.html#transaction-response)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from ingest.pipeline import iter_file
from ingest.remote import post_bundles
from tests.ingest.fixtures import PATIENT, long_csv, write


def _server(seen: list[dict], existing: set[str]) -> httpx.MockTransport:
    """A transaction endpoint honouring ifNoneExist against a set of known queries."""

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.method == "POST"
        assert str(request.url) == "http://fhir.test/fhir"
        assert request.headers["content-type"] == "application/fhir+json"
        bundle = json.loads(request.content)
        seen.append(bundle)
        out = []
        for e in bundle["entry"]:
            query = e["request"].get("ifNoneExist")
            status = "200 OK" if query in existing else "201 Created"
            existing.add(query)
            out.append({"response": {"status": status}})
        return httpx.Response(
            200, json={"resourceType": "Bundle", "type": "transaction-response", "entry": out}
        )

    return httpx.MockTransport(handle)


def test_bundles_are_posted_and_a_second_run_creates_nothing(tmp_path: Path) -> None:
    text, expected = long_csv()
    path = write(tmp_path / "a.csv", text)
    seen: list[dict] = []
    existing: set[str] = set()
    with httpx.Client(transport=_server(seen, existing)) as client:
        first = post_bundles(
            iter_file(path, "csv", PATIENT, batch_size=5), "http://fhir.test/fhir/", client=client
        )
        again = post_bundles(
            iter_file(path, "csv", PATIENT, batch_size=5), "http://fhir.test/fhir/", client=client
        )
    assert first.ok and first.posted == len(seen) // 2
    assert first.created == sum(len(b["entry"]) for b in seen[: first.posted]) - first.existing
    assert first.created >= len(expected)
    assert again.created == 0 and again.existing == first.created + first.existing


def test_http_errors_are_reported_per_bundle() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(422, json={"resourceType": "OperationOutcome"}))
    with httpx.Client(transport=transport) as client:
        report = post_bundles(
            [{"resourceType": "Bundle", "type": "transaction", "entry": []}] * 2, "http://x", client=client
        )
    assert (report.posted, report.failed) == (0, 2)
    assert report.errors[0].startswith("bundle 1: HTTP 422")
