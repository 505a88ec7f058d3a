"""Fixtures of the job tests: the Bulk Data ones (tests/bulk_support.py)."""

from tests.bulk_support import bulk_caller, bulk_client, bulk_settings

__all__ = ["bulk_caller", "bulk_client", "bulk_settings"]
