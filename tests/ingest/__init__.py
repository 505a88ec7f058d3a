"""Tests of the ingest adapters (ingest/)."""
