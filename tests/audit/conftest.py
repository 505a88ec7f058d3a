"""An app with the audit trail on, over the parametrised store, and helpers to read what it recorded."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from fhir_server.settings import Settings
from fhir_server.store.sql import Store

BASE = "http://testserver"


@pytest.fixture
def smart_settings(smart_settings: Settings) -> Settings:
    """The SMART server of tests/conftest.py with the audit trail on and bulk jobs polled at any pace."""
    return smart_settings.model_copy(
        update={
            "audit": True,
            "bulk_min_poll_seconds": 0,
            "bulk_retry_after_seconds": 1,
            "bulk_snapshot_settle_seconds": 0,
        }
    )


@pytest.fixture
def audit_settings(smart_settings: Settings) -> Settings:
    return smart_settings


@pytest.fixture
def audited(smart_client: TestClient) -> TestClient:
    """A SMART-enforcing server that records the audit trail (`smart_client` on these settings)."""
    return smart_client


def trail(http: TestClient) -> list[dict[str, Any]]:
    """Every AuditEvent recorded so far (after the recorder wrote what was queued), oldest first."""
    http.app.state.audit.flush()  # type: ignore[attr-defined]
    store: Store = http.app.state.context.store  # type: ignore[attr-defined]
    with store.read() as tx:
        rows = tx.current_of_type("AuditEvent", limit=100_000)
    events = [orjson.loads(r.content) for r in rows]
    return sorted(events, key=lambda e: e["recorded"])


def subtype(event: dict[str, Any]) -> str:
    return str(event["subtype"][0]["code"])


def whats(event: dict[str, Any]) -> set[str]:
    return {e["what"]["reference"] for e in event.get("entity", []) if "what" in e}


def patients(event: dict[str, Any]) -> set[str]:
    return {
        e["what"]["reference"].removeprefix("Patient/")
        for e in event.get("entity", [])
        if e.get("role", {}).get("code") == "1"
    }


def query_of(event: dict[str, Any]) -> str | None:
    for e in event.get("entity", []):
        if e.get("role", {}).get("code") == "24":
            return base64.b64decode(e["query"]).decode()
    return None


def client_of(event: dict[str, Any]) -> str | None:
    for agent in event["agent"]:
        if agent["type"]["coding"][0]["code"] == "110153":
            return str(agent["who"]["identifier"]["value"])
    return None


def user_of(event: dict[str, Any]) -> str | None:
    for agent in event["agent"]:
        if agent["type"]["coding"][0]["code"] == "IRCP":
            return str(agent["who"].get("reference") or agent.get("altId"))
    return None
