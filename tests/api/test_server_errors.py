"""Unexpected exceptions: a complete 500 OperationOutcome, a usable keep-alive connection, nothing leaked."""

from __future__ import annotations

import http.client
import logging
from collections.abc import Iterator

import orjson
import pytest

from fhir_server import xml_format
from fhir_server.app import create_app
from fhir_server.interactions import read
from fhir_server.settings import Settings
from fhir_server.store.sql import Store
from tests.live_server import free_port, serving

SECRET = "Zebulon-Quagmire-4711"  # stands for patient data or a connection string in an exception


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def failing_server(store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, list[str]]]:
    """A real uvicorn server whose reads raise RuntimeError; yields its port and every log line."""

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"lookup of {SECRET} failed")

    monkeypatch.setattr(read, "read", boom)
    port = free_port()
    app = create_app(Settings(base_url=f"http://127.0.0.1:{port}", allow_anonymous=True), store=store)
    collect = _Collect()
    # uvicorn's loggers do not propagate to the root logger: listen on them and on the root.
    loggers = [logging.getLogger(), logging.getLogger("uvicorn"), logging.getLogger("uvicorn.error")]
    for logger in loggers:
        logger.addHandler(collect)
    try:
        with serving(app, port):
            yield port, collect.lines
    finally:
        for logger in loggers:
            logger.removeHandler(collect)


def test_keep_alive_connection_stays_usable_after_a_500(failing_server: tuple[int, list[str]]) -> None:
    port, _ = failing_server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/Patient/x")
        first = conn.getresponse()
        body = first.read()
        sock = conn.sock
        assert first.status == 500
        assert first.getheader("Connection") != "close" and sock is not None
        assert int(first.getheader("Content-Length") or -1) == len(body)
        assert orjson.loads(body)["issue"][0]["code"] == "exception"

        conn.request("GET", "/metadata")  # on the same socket: the old code reset it
        second = conn.getresponse()
        assert orjson.loads(second.read())["resourceType"] == "CapabilityStatement"
        assert second.status == 200 and conn.sock is sock
    finally:
        conn.close()


def test_exception_text_reaches_neither_the_client_nor_the_log(failing_server: tuple[int, list[str]]) -> None:
    port, lines = failing_server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/Patient/x", headers={"Accept": "application/fhir+xml"})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status == 500
    assert SECRET not in body.decode()
    assert (response.getheader("Content-Type") or "").startswith("application/fhir+xml")  # as asked
    assert xml_format.parse(body)["resourceType"] == "OperationOutcome"
    logged = "\n".join(lines)
    assert "RuntimeError (message withheld)" in logged and "in boom" in logged
    assert SECRET not in logged
