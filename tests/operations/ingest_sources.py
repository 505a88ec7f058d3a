"""Source files of every ingest kind, from the ingest test generators, and how to count what a server stored (https://hl7.org/fhir/R4/http.html#transaction).

Nothing is generated here: :func:`make` writes what ``tests/ingest/fixtures.py``,
``tests/ingest/lab_fixtures.py`` and ``tests/ingest/dicom/measurement_report.py`` produce, and
names the Observation codes the ingest must store.
"""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydicom.data import get_testdata_file
from sqlalchemy import func, select

from fhir_server.store import tables as t
from fhir_server.store.sql import Store
from ingest.pipeline import ingest_file
from tests.ingest.dicom.measurement_report import EXPECTED as SR_EXPECTED
from tests.ingest.dicom.measurement_report import make_measurement_report
from tests.ingest.fixtures import (
    PATIENT,
    apple_every_measure,
    fitbit_payload,
    health_connect_payload,
    long_csv,
    open_mhealth_points,
    wide_csv,
    write,
)
from tests.ingest.lab_fixtures import make_report, render_pdf

KINDS = (
    "apple-health",
    "health-connect",
    "fitbit",
    "open-mhealth",
    "long-csv",
    "wide-csv",
    "text-pdf-lab-report",
    "dicom-image",
    "dicom-sr",
)
PATIENT_ID = PATIENT.split("/", 1)[1]


@dataclass
class Source:
    """A file to ingest, its format and options, and the Observation codes it must give."""

    path: Path
    format: str
    codes: list[str]
    options: dict[str, Any] = field(default_factory=dict)

    def resource_types(self, batch_size: int) -> Counter[str]:
        """How many distinct resources of each type the file's Bundles hold (what a server must store)."""
        result = ingest_file(self.path, self.format, PATIENT, options=self.options, batch_size=batch_size)
        assert result.ok, result.problems
        distinct = {e["fullUrl"]: e["resource"]["resourceType"] for b in result.bundles for e in b["entry"]}
        return Counter(distinct.values())


def make(kind: str, folder: Path) -> Source:
    """Write the source file of ``kind`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "apple-health":
        text, expected = apple_every_measure()
        return Source(write(folder / "export.xml", text), "apple-health", [e.code for e in expected])
    if kind == "health-connect":
        payload, expected = health_connect_payload()
        return Source(write(folder / "hc.json", payload), "health-connect", [e.code for e in expected])
    if kind == "fitbit":
        payload, expected = fitbit_payload()
        codes = [e.code for e in expected]
        return Source(write(folder / "fitbit.json", payload), "fitbit", codes, {"timezone": "+01:00"})
    if kind == "open-mhealth":
        points, expected = open_mhealth_points()
        return Source(write(folder / "omh.json", points), "open-mhealth", [e.code for e in expected])
    if kind == "long-csv":
        text, expected = long_csv()
        return Source(write(folder / "long.csv", text), "csv", [e.code for e in expected])
    if kind == "wide-csv":
        text, expected = wide_csv()
        return Source(write(folder / "wide.csv", text), "csv", [e.code for e in expected])
    if kind == "text-pdf-lab-report":
        report = make_report(seed=11)
        return Source(render_pdf(report, folder / "report.pdf"), "lab-report", [r.loinc for r in report.rows])
    if kind == "dicom-image":
        ct = get_testdata_file("CT_small.dcm")
        assert isinstance(ct, str)
        return Source(Path(shutil.copy(ct, folder / "CT_small.dcm")), "dicom", [])
    if kind == "dicom-sr":
        path = make_measurement_report(folder / "measurements.dcm")
        return Source(path, "dicom", [e.code for e in SR_EXPECTED])
    raise ValueError(kind)


def stored(store: Store) -> tuple[int, int]:
    """(resources, versions) in the store."""
    with store.engine.connect() as conn:
        resources = conn.execute(select(func.count()).select_from(t.resource)).scalar_one()
        versions = conn.execute(select(func.count()).select_from(t.resource_version)).scalar_one()
    return int(resources), int(versions)


def stored_types(store: Store) -> Counter[str]:
    """How many resources of each type the store holds."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(t.resource.c.res_type, func.count()).group_by(t.resource.c.res_type))
        return Counter({str(rtype): int(n) for rtype, n in rows})


def stored_resources(store: Store, res_type: str) -> list[dict[str, Any]]:
    """The current resources of one type, as stored."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(t.resource.c.content).where(
                t.resource.c.res_type == res_type, t.resource.c.deleted.is_(False)
            )
        )
        return [orjson.loads(row.content) for row in rows]


def create_patient(store: Store, patient_id: str = PATIENT_ID) -> None:
    """The Patient the ingested data refers to (the store checks references)."""
    with store.write() as tx:
        tx.create({"resourceType": "Patient", "active": True}, patient_id)
