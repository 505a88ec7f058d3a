"""Tests of the DICOM adapter: ingest/dicom/."""
