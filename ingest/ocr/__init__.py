"""Lab reports by text layer or OCR -> DocumentReference, DiagnosticReport and Observations (https://hl7.org/fhir/R4/diagnosticreport.html).

``ingest_lab_report(path, patient_ref, options=None) -> IngestResult`` and ``ADAPTER`` (format
``lab-report``; ``ADAPTER.ingest(path, ctx, patient_ref) -> list[Bundle dict]``). Modules: ``rows``
(row parser), ``pdf`` (pdfplumber text layer / page rendering), ``orientation`` (OSD, deskew,
scale), ``tesseract`` (recognition with word confidences), ``checks`` (when a row may be final),
``lab_report`` (FHIR resources), ``adapter``; the original file is kept as a DocumentReference by
the core :mod:`ingest.document`.
"""

from ingest.ocr.adapter import ADAPTER, ingest_bytes, ingest_lab_report

__all__ = ["ADAPTER", "ingest_bytes", "ingest_lab_report"]
