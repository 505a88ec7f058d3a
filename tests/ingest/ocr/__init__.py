"""Tests of the lab-report (OCR) adapter: ingest/ocr/."""
