"""The audit retention sweeper: AuditEvents older than `FHIR_AUDIT_RETENTION_DAYS` are removed for good (docs/audit.md)."""

from __future__ import annotations

from .. import instant
from ..store import expire
from ..store.sql import Store

DAY_US = 86_400 * 1_000_000
CHUNK = 1000  # resources removed per transaction


def sweep(store: Store, retention_days: int, *, now_us: int | None = None) -> int:
    """Remove AuditEvents recorded more than `retention_days` ago (0: keep them all); how many went."""
    if retention_days <= 0:
        return 0
    cutoff = (now_us if now_us is not None else instant.now_us()) - retention_days * DAY_US
    removed = 0
    while True:
        with store.write() as tx:
            count = expire.purge_older_than(tx.conn, "AuditEvent", cutoff, CHUNK)
        removed += count
        if count < CHUNK:
            return removed
