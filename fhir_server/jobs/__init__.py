"""Asynchronous jobs: Bulk Data export and import (https://hl7.org/fhir/uv/bulkdata/STU2/export.html)."""
