"""Every ingest kind through the server's transaction endpoint on SQLite and PostgreSQL: the expected resources, nothing new on re-ingest, CSV round trip, bad rows kept out (https://hl7.org/fhir/R4/http.html#transaction)."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi.testclient import TestClient

from fhir_server.operations.ingest import Tally, open_run, send_bundles
from fhir_server.store.sql import Store
from ingest.csv_format import export_csv
from tests.conftest import BASE
from tests.ingest.fixtures import PATIENT, bad_long_csv, long_csv, wide_csv, write
from tests.operations.ingest_sources import KINDS, create_patient, make, stored, stored_types

BATCH = 7  # small batches: several transactions per file


def _ingest(
    client: TestClient, path: Path, fmt: str, options: dict[str, Any] | None = None, batch_size: int = BATCH
) -> Tally:
    run, tally = open_run(path, fmt, PATIENT, batch_size=batch_size, options=options)
    return send_bundles(run, tally, BASE, client=cast(httpx.Client, client))  # an httpx2.Client: same API


def _observations(client: TestClient) -> list[dict[str, Any]]:
    response = client.get("/Observation", params={"patient": PATIENT, "_count": "1000"})
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert not any(link["relation"] == "next" for link in bundle.get("link", []))
    return [e["resource"] for e in bundle.get("entry", [])]


def _rows(text: str) -> tuple[list[str], list[list[str]]]:
    header, *rows = list(csv.reader(io.StringIO(text)))
    return header, sorted(rows)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_ingests_into_the_expected_resources_and_reingesting_creates_nothing(
    client: TestClient, store: Store, tmp_path: Path, kind: str
) -> None:
    create_patient(store)
    source = make(kind, tmp_path)
    first = _ingest(client, source.path, source.format, source.options)
    assert first.failed_bundles == 0 and first.problems == [], first.problems
    expected_types = source.resource_types(BATCH)
    assert stored_types(store) == expected_types + Counter({"Patient": 1})
    assert first.created == sum(expected_types.values())
    codes = sorted(o["code"]["coding"][0]["code"] for o in _observations(client))
    assert codes == sorted(source.codes)
    if source.format in ("lab-report", "dicom"):
        assert expected_types["Provenance"] == 1
    before = stored(store)
    again = _ingest(client, source.path, source.format, source.options)
    assert stored(store) == before
    assert (again.created, again.failed_bundles) == (0, 0)
    assert again.existing == again.entries == first.entries


def test_document_kinds_store_their_documents_and_reports(
    client: TestClient, store: Store, tmp_path: Path
) -> None:
    create_patient(store)
    for kind in ("text-pdf-lab-report", "dicom-sr"):
        source = make(kind, tmp_path / kind)
        assert _ingest(client, source.path, "auto").failed_bundles == 0
    types = stored_types(store)
    assert types["DocumentReference"] == 2 and types["DiagnosticReport"] == 2 and types["ImagingStudy"] == 1
    reports = client.get("/DiagnosticReport", params={"subject": PATIENT}).json()["entry"]
    for entry in reports:
        report = entry["resource"]
        for result in report["result"]:
            assert client.get(f"/{result['reference']}").status_code == 200


@pytest.mark.parametrize("layout", ["long", "wide"])
def test_csv_to_server_to_csv_gives_back_the_same_rows(
    client: TestClient, store: Store, tmp_path: Path, layout: str
) -> None:
    create_patient(store)
    text, _ = long_csv() if layout == "long" else wide_csv()
    assert _ingest(client, write(tmp_path / f"{layout}.csv", text), "csv").failed_bundles == 0
    back = export_csv(_observations(client), "long" if layout == "long" else "wide")
    if layout == "wide":
        text = text.replace("(lb)", "([lb_av])")
    header, rows = _rows(back)
    want_header, want_rows = _rows(text)
    assert header == want_header
    assert rows == want_rows


def test_partly_bad_csv_stores_the_good_rows_and_reports_file_and_line_of_the_bad(
    client: TestClient, store: Store, tmp_path: Path
) -> None:
    create_patient(store)
    text, bad = bad_long_csv()
    tally = _ingest(client, write(tmp_path / "mixed.csv", text), "csv")
    assert sorted(p.location for p in tally.problems) == sorted(bad)
    for problem in tally.problems:
        assert problem.file == "mixed.csv"
        assert bad[problem.location].lower() in problem.message.lower(), problem  # type: ignore[index]
        assert str(problem).startswith(f"mixed.csv:line {problem.location}: error:")
    values = sorted(o["valueQuantity"]["value"] for o in _observations(client))
    assert values == [70.1, 72, 74]


def test_a_batch_the_server_refuses_is_a_problem_and_the_other_batches_are_stored(
    client: TestClient, store: Store, tmp_path: Path
) -> None:
    create_patient(store)
    other = "date,metric,value,unit,patient\n"
    rows = "".join(f"2024-03-01T08:0{i}:00Z,heart_rate,{70 + i},/min,Patient/123\n" for i in range(4))
    rows += "2024-03-01T09:00:00Z,heart_rate,99,/min,Patient/nobody\n"
    tally = _ingest(client, write(tmp_path / "two.csv", other + rows), "csv", batch_size=3)
    assert (tally.failed_bundles, tally.bundles) == (1, 2)  # [70, 71] [72, 73] stored, [99] refused
    [refused] = [p for p in tally.problems if p.location.startswith("batch")]  # type: ignore[union-attr]
    assert refused.file == "two.csv" and "refused" in refused.message
    assert sorted(o["valueQuantity"]["value"] for o in _observations(client)) == [70, 71, 72, 73]
