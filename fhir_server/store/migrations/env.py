"""Alembic environment: migrations run against the engine the caller hands over (https://alembic.sqlalchemy.org)."""

from __future__ import annotations

from alembic import context

from fhir_server.store.migrate import include_name
from fhir_server.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection, target_metadata=metadata, render_as_batch=True, include_name=include_name
)
with context.begin_transaction():
    context.run_migrations()
