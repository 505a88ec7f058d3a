"""Tests of the DICOM adapter: ingest/dicom/ (https://hl7.org/fhir/R4/imagingstudy.html)."""
