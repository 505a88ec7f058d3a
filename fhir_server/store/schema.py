"""All tables of the database, from every package that owns some, on one MetaData for Alembic.

Import this (not the single modules) wherever the whole schema is needed: migrations, tests.
"""

from __future__ import annotations

from ..auth import tables as _auth_tables  # noqa: F401  (SMART authorization server)
from ..jobs import tables as _job_tables  # noqa: F401  (Bulk Data jobs)
from ..subscriptions import tables as _subscription_tables  # noqa: F401  (Subscriptions)
from . import observation_rollup as _observation_rollup  # noqa: F401  ($stats partial aggregates)
from . import replicas as _replicas  # noqa: F401  (read-your-writes pins of read replicas)
from .tables import metadata

__all__ = ["metadata"]
