"""The wearable-bridge transaction in docs/ingest.md works as documented: created once, matched when resent (https://hl7.org/fhir/R4/http.html#ccreate)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from fhir_server.store.sql import Store
from tests.operations.ingest_sources import create_patient, stored

DOC = Path(__file__).resolve().parents[2] / "docs" / "ingest.md"


def _bridge_bundle() -> dict[str, Any]:
    [block] = re.findall(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    bundle: dict[str, Any] = json.loads(block)
    return bundle


def test_documented_bridge_bundle_is_created_once_and_matched_when_resent(
    client: TestClient, store: Store
) -> None:
    create_patient(store)
    bundle = _bridge_bundle()
    headers = {"Content-Type": "application/fhir+json"}
    first = client.post("/", json=bundle, headers=headers)
    assert first.status_code == 200, first.text
    assert [e["response"]["status"] for e in first.json()["entry"]] == ["201 Created", "201 Created"]
    before = stored(store)
    again = client.post("/", json=bundle, headers=headers)
    assert [e["response"]["status"] for e in again.json()["entry"]] == ["200 OK", "200 OK"]
    assert stored(store) == before
    [obs] = client.get("/Observation", params={"patient": "Patient/123"}).json()["entry"]
    device = obs["resource"]["device"]["reference"]
    assert device.startswith("Device/") and client.get(f"/{device}").status_code == 200
