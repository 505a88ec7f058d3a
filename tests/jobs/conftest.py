"""Fixtures of the Bulk Data job tests (https://hl7.org/fhir/uv/bulkdata/STU2/export.html): tests/bulk_support.py."""

from collections.abc import Iterator

import pytest

from fhir_server import job_kinds
from tests.bulk_support import bulk_caller, bulk_client, bulk_settings

__all__ = ["bulk_caller", "bulk_client", "bulk_settings"]


@pytest.fixture(autouse=True)
def registered_job_kinds() -> Iterator[None]:
    """The job kinds are registered, as at start-up (tests here run jobs without an app)."""
    job_kinds.register()
    yield
