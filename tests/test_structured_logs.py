"""Structured logs (issue 13): one JSON line per request with its request id (the X-Request-ID the
client sent when it is safe, else a new one, echoed in the response) and the same labels as the
metrics; records logged while the request runs carry the same id; no path, query or body (docs/logging.md)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient

from fhir_server.structured_logs import JsonFormatter, RequestIdFilter, TextFormatter, configure
from tests import factories

SENTINEL = "Przybyszewski-Log-Sentinel"


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("fhir_server")
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield out
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def _records(out: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def test_one_json_line_per_request_with_its_id_and_no_patient_data(
    client: TestClient, json_lines: io.StringIO
) -> None:
    r = client.post("/Patient", json=factories.patient(family=SENTINEL), headers={"X-Request-ID": "req-42.a"})
    assert r.headers["x-request-id"] == "req-42.a"
    pid = r.json()["id"]
    r2 = client.get("/Patient", params={"family": SENTINEL}, headers={"X-Request-ID": "bad id\twith spaces"})
    generated = r2.headers["x-request-id"]
    assert generated != "bad id\twith spaces" and len(generated) == 32
    access = [rec for rec in _records(json_lines) if rec["logger"] == "fhir_server.access"]
    assert [(a["request_id"], a["interaction"], a["type"], a["status"]) for a in access] == [
        ("req-42.a", "create", "Patient", 201),
        (generated, "search-type", "Patient", 200),
    ]
    assert all(isinstance(a["duration_ms"], float) and a["level"] == "info" for a in access)
    text = json_lines.getvalue()
    assert SENTINEL not in text and pid not in text


def test_records_logged_inside_a_request_carry_its_id(client: TestClient, json_lines: io.StringIO) -> None:
    client.get("/Patient", headers={"X-Request-ID": "inner-1"})  # FHIR_ALLOW_ANONYMOUS warnings etc.
    logging.getLogger("fhir_server.test").info("outside any request")
    records = _records(json_lines)
    assert records[-1]["message"] == "outside any request" and "request_id" not in records[-1]


def test_exceptions_are_logged_without_their_message() -> None:
    try:
        raise ValueError(f"DETAIL: Failing row contains ({SENTINEL})")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), __import__("sys").exc_info()
        )
    for formatter in (JsonFormatter(), TextFormatter()):
        line = formatter.format(record)
        assert "ValueError" in line and SENTINEL not in line


def test_configure_sends_json_lines_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure("json")
        logging.getLogger("fhir_server.test").warning("hello %s", "there")
        configure("text")
        logging.getLogger("fhir_server.test").warning("plain")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    first, second = capsys.readouterr().err.splitlines()[-2:]
    assert orjson.loads(first)["message"] == "hello there"
    assert second.endswith("WARNING fhir_server.test: plain")
