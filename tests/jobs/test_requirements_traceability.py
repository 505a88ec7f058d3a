"""Every server SHALL of Bulk Data Access 2.0 (https://hl7.org/fhir/uv/bulkdata/STU2/) is named by a test
docstring (`@N` for hl7.fhir.uv.bulkdata_2.0.0@N), or listed here as outside what the server can test."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT.parent / "shared" / "docs" / "requirements" / "bulk-data-2.0-requirements.txt"
TESTS = [
    *sorted((ROOT / "tests" / "jobs").glob("test_*.py")),
    *sorted((ROOT / "tests" / "api").glob("test_bulk_*.py")),
]

NOT_TESTED_HERE = {
    2: "TLS is terminated by the deployment (reverse proxy), not by this application",
    198: "the manifest carries no `extension`, so there is nothing to check",
    199: "the manifest carries no `extension`, so there is nothing to check",
    213: "the server creates no Attachment urls: resources are exported as stored",
    214: "the server creates no Attachment urls: resources are exported as stored",
    215: "the server creates no Attachment urls: resources are exported as stored",
    216: "the server creates no Attachment urls: resources are exported as stored",
}


def _shall_ids(text: str) -> set[int]:
    found = re.finditer(r"hl7\.fhir\.uv\.bulkdata_2\.0\.0@(\d+) \| (SHALL(?: NOT)?) \|", text)
    return {int(m.group(1)) for m in found}


def _cited() -> set[int]:
    out: set[int] = set()
    for path in TESTS:
        for a, b in re.findall(r"@(\d+)(?:-@(\d+))?", path.read_text()):
            out.update(range(int(a), int(b or a) + 1))
    return out


@pytest.mark.skipif(not REQUIREMENTS.exists(), reason=f"requirements list not present at {REQUIREMENTS}")
def test_every_server_shall_maps_to_a_named_test() -> None:
    shall = _shall_ids(REQUIREMENTS.read_text())
    assert shall, "no SHALL found: has the requirements format changed?"
    missing = sorted(shall - _cited() - set(NOT_TESTED_HERE))
    assert missing == [], f"SHALL requirements without a test: {missing}"
