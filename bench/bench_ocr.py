"""Seconds per page of the lab-report adapter: text-layer PDF, clean PNG scan, rotated blurred PNG photo (ingest/ocr, https://hl7.org/fhir/R4/diagnosticreport.html).

Usage: ``.venv/bin/python bench/bench_ocr.py [pages]`` (default 3 per kind). Generates synthetic
reports with tests/ingest/lab_fixtures.py, ingests each and prints wall seconds per page.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.ocr import ingest_lab_report
from tests.ingest.lab_fixtures import make_report, render_pdf, render_png


def main(pages: int = 3) -> None:
    kinds = {
        "text-pdf": lambda r, p: render_pdf(r, p.with_suffix(".pdf")),
        "clean-png-200dpi": lambda r, p: render_png(r, p.with_suffix(".png")),
        "rotated-blurred-png": lambda r, p: render_png(r, p.with_suffix(".png"), degraded=True),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for kind, render in kinds.items():
            times = []
            for seed in range(pages):
                path = render(make_report(1000 + seed), Path(tmp) / f"{kind}-{seed}")
                start = time.perf_counter()
                result = ingest_lab_report(path, "Patient/bench")
                times.append(time.perf_counter() - start)
                assert result.bundles, result.problems
            print(
                f"{kind:22s} {statistics.mean(times):6.2f} s/page (min {min(times):.2f}, max {max(times):.2f})"
            )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
