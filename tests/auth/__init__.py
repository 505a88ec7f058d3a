"""Tests of fhir_server.auth."""
