"""Tests of fhir_server.jobs (https://hl7.org/fhir/uv/bulkdata/STU2/export.html)."""
