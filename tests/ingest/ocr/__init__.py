"""Tests of the lab-report (OCR) adapter: ingest/ocr/ (https://hl7.org/fhir/R4/diagnosticreport.html)."""
