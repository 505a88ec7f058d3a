"""Fixtures of the Bulk Data job tests (https://hl7.org/fhir/uv/bulkdata/STU2/export.html): tests/bulk_support.py."""

from tests.bulk_support import bulk_caller, bulk_client, bulk_settings

__all__ = ["bulk_caller", "bulk_client", "bulk_settings"]
