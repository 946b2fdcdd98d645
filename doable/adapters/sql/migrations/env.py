"""Alembic environment: always run with a connection handed in by doable.adapters.sql.engine.migrate."""

from __future__ import annotations

from alembic import context

from doable.adapters.sql.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `doable migrate` (it supplies the database connection)")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
