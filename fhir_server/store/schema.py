"""All tables of the database, from every package that owns some, on one MetaData for Alembic.

Import this (not the single modules) wherever the whole schema is needed: migrations, tests.
"""

from __future__ import annotations

from .tables import metadata

__all__ = ["metadata"]
